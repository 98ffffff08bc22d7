"""Lesion masks for the auxiliary lesion-map loss: read onto the series, cropped like the images,
moved like the images by augmentation, and trained on (loss falls; the shipped model stays plain)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from PETriageLib.ingest.load import load_series
from PETriageLib.preprocess.lungs import analyse_lungs, pixel_spacing_of
from PETriageLib.preprocess.slices import PreprocessConfig, prepare_slices
from PETriageLib.training.augment import AugmentConfig, augment_batch, augment_with_maps
from PETriageLib.training.cache import SliceDataset, cache_sources
from PETriageLib.training.config import TrainConfig
from PETriageLib.training.lesion_masks import MaskError, lesion_fractions, read_lesion_mask, stage_lesion_map
from PETriageLib.training.manifest import load_manifest
from PETriageLib.training.pipeline import train_from_manifest

from support.tiny_training import TINY, make_tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("mask-phantoms"), patients=6, seed=21)


def _pe_source(manifest: Path):
    sources = load_manifest(manifest)
    assert all(s.mask is not None and s.mask.is_file() for s in sources)
    return next(s for s in sources if s.patient_label == "pe"), sources


def test_mask_lies_on_the_series_and_agrees_with_the_labels(dataset) -> None:
    source, _ = _pe_source(dataset)
    volume = load_series(source.paths[0])
    mask = read_lesion_mask(source.mask, volume)
    assert mask.shape == volume.hu.shape
    import csv

    labels = [r["label"] for r in csv.DictReader(open(source.labels_csv))]
    assert [("pe" if (m == 1).any() else "other" if m.any() else "wnl") for m in mask] == labels
    # A clot sits in contrast-filled artery: its voxels are far below the opacified lumen around it.
    assert np.median(volume.hu[mask == 1]) < 200


def test_mask_in_reversed_z_order_is_matched_and_a_wrong_one_refused(dataset, tmp_path) -> None:
    source, _ = _pe_source(dataset)
    volume = load_series(source.paths[0])
    img = sitk.ReadImage(str(source.mask))
    arr = sitk.GetArrayFromImage(img)
    flipped = sitk.GetImageFromArray(arr[::-1].copy())
    flipped.SetSpacing(img.GetSpacing())
    top = img.TransformIndexToPhysicalPoint((0, 0, arr.shape[0] - 1))
    flipped.SetOrigin(top)
    flipped.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))
    sitk.WriteImage(flipped, str(tmp_path / "flipped.nrrd"))
    assert np.array_equal(read_lesion_mask(tmp_path / "flipped.nrrd", volume), read_lesion_mask(source.mask, volume))

    shifted = sitk.Image(img)
    shifted.SetOrigin((img.GetOrigin()[0], img.GetOrigin()[1], img.GetOrigin()[2] + 0.5 * img.GetSpacing()[2]))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nrrd"))
    with pytest.raises(MaskError, match="no mask slice"):
        read_lesion_mask(tmp_path / "shifted.nrrd", volume)
    sitk.WriteImage(sitk.GetImageFromArray(arr[:, :-4, :].copy()), str(tmp_path / "small.nrrd"))
    with pytest.raises(MaskError, match="does not match"):
        read_lesion_mask(tmp_path / "small.nrrd", volume)


def test_lesion_fractions_keep_the_lesion_area_in_model_space(dataset) -> None:
    _, sources = _pe_source(dataset)
    config = PreprocessConfig(windows=["pe", "lung"], input_size=64)
    checked = 0
    for source in sources:
        volume = load_series(source.paths[0])
        mask = read_lesion_mask(source.mask, volume)
        prepared = prepare_slices(volume, range(volume.num_slices), config, lungs=analyse_lungs(volume))
        frac = lesion_fractions(mask, prepared.crops)
        assert frac.shape == (volume.num_slices, 2, 64, 64) and frac.dtype == np.uint8
        pixel_mm2 = float(np.prod(pixel_spacing_of(volume)))
        for k, crop in enumerate(prepared.crops):
            for c, hit in enumerate((mask[k] == 1, (mask[k] > 1))):
                if not hit.any():
                    assert not frac[k, c].any()
                    continue
                if hit.sum() < 30:  # tiny lesions: antialiasing spreads them thin
                    continue
                model_mm2 = frac[k, c].sum() / 255.0 * pixel_mm2 / (crop.scale[0] * crop.scale[1])
                assert model_mm2 == pytest.approx(hit.sum() * pixel_mm2, rel=0.15)
                checked += 1
    assert checked >= 5
    lm = stage_lesion_map(frac, 1)
    assert lm.shape == (volume.num_slices, 64, 64) and lm.max() <= 1.0
    assert np.allclose(stage_lesion_map(frac, 2), frac[:, 0] / 255.0)


def test_augmentation_moves_the_map_with_the_image() -> None:
    wins = ["pe", "lung"]
    x = torch.full((3, 2, 48, 48), -1.0)
    maps = torch.zeros(3, 48, 48)
    for n, (r, c) in enumerate([(10, 12), (30, 20), (22, 36)]):
        x[n, :, r:r + 6, c:c + 6] = 1.0
        maps[n, r:r + 6, c:c + 6] = 1.0
    quiet = AugmentConfig(rotation_deg=25, translate=0.1, zoom_min=0.8, zoom_max=1.2, hflip=0.5, vflip=0.5,
                          hu_noise=0.0, hu_shift=0.0)
    out, moved = augment_with_maps(x, maps, wins, quiet, torch.Generator().manual_seed(3))
    assert torch.equal(out, augment_batch(x, wins, quiet, torch.Generator().manual_seed(3)))
    rows, cols = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    for n in range(3):
        bright = (out[n, 0] + 1.0).clamp(min=0)  # the blob, above the background
        for weight in (bright, moved[n]):
            assert float(weight.sum()) > 20
        cx = [(w * rows).sum() / w.sum() for w in (bright, moved[n])], [(w * cols).sum() / w.sum() for w in (bright, moved[n])]
        assert abs(float(cx[0][0] - cx[0][1])) < 0.5 and abs(float(cx[1][0] - cx[1][1])) < 0.5
    assert not torch.equal(moved, maps)  # it did move


def test_lesion_map_loss_trains_and_the_shipped_model_stays_plain(dataset, tmp_path) -> None:
    cfg = TrainConfig(stage=1, epochs=2, steps_per_epoch=3, lr=3e-3, scheduler="constant", patience=5,
                      mask_loss_weight=1.0, windows=["pe", "lung"], **TINY)
    result = train_from_manifest(cfg, dataset, tmp_path / "run", tmp_path / "cache", tmp_path / "splits.json",
                                 ratios=(4, 2, 0))
    assert all(np.isfinite(h["train_lesion_map_loss"]) for h in result.history)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert set(state["lesion_head"]) == {"conv.weight", "conv.bias"}
    from PETriageLib.models import build_model
    from PETriageLib.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(result.best_path)
    plain = build_model("cbamdrn_d22", ["pe", "lung"], width=0.125)
    assert set(model.state_dict()) == set(plain.state_dict())  # no head in the shipped checkpoint
    # Resuming with more epochs restores the head and goes on.
    more = TrainConfig(**{**cfg.to_dict(), "epochs": 3})
    again = train_from_manifest(more, dataset, tmp_path / "run", tmp_path / "cache", tmp_path / "splits.json")
    assert again.resumed_from == {"epoch": 2, "step": 0} and len(again.history) == 3


def test_lesion_map_loss_falls_when_fitting_one_batch(dataset, tmp_path) -> None:
    from PETriageLib.models import build_model
    from PETriageLib.training.lesion_loss import head_for, lesion_map_loss

    config = PreprocessConfig(windows=["pe", "lung"], input_size=64)
    cached = cache_sources(load_manifest(dataset), config, tmp_path / "cache", with_masks=True)
    data = SliceDataset(cached, stage=1)
    rows = [int(i) for i in np.flatnonzero(data.targets == 1)[:16]]
    x, _ = data.batch(rows)
    maps, has = data.batch_lesion_maps(rows)
    assert has.all() and maps.max() > 0.5
    torch.manual_seed(0)
    model = build_model("cbamdrn_d22", ["pe", "lung"], width=0.125)
    head = head_for(model)
    opt = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=3e-3)
    xt, mt, ht = torch.from_numpy(x), torch.from_numpy(maps), torch.from_numpy(has)
    losses = []
    for _ in range(25):
        loss = lesion_map_loss(head(model.branch_maps(xt)), mt, ht)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    # No masks: no loss, and a clear error when training asks for it.
    assert lesion_map_loss(head(model.branch_maps(xt)), mt, torch.zeros_like(ht)).item() == 0.0


def test_mask_loss_without_masks_is_refused(dataset, tmp_path) -> None:
    text = Path(dataset).read_text().splitlines()
    header = text[0].split(",")
    col = header.index("mask")
    rows = [",".join(v for i, v in enumerate(line.split(",")) if i != col) for line in text]
    no_masks = Path(dataset).parent / "no-masks.csv"
    no_masks.write_text("\n".join(rows) + "\n")
    cfg = TrainConfig(stage=1, epochs=1, steps_per_epoch=1, mask_loss_weight=1.0, **TINY)
    with pytest.raises(ValueError, match="needs lesion masks"):
        train_from_manifest(cfg, no_masks, tmp_path / "run", tmp_path / "cache", tmp_path / "splits.json",
                            ratios=(4, 2, 0))
