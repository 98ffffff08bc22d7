"""The batched preprocessing (lung masks of slice stacks, crops of context slices together, windows
on the whole batch) gives bit for bit what one slice at a time gives, on a phantom and a real series.

The per-slice references below are written with scipy directly, one 2D slice per call, as the
preprocessing was before it was batched: an oracle independent of the code under test.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from PETriageLib.ingest.load import load_series
from PETriageLib.ingest.volume import AIR_HU
from PETriageLib.preprocess.lungs import (analyse_lungs, keep_main_air_3d, lung_masks, pixel_spacing_of,
                                          _shrink, _slice_lung)
from PETriageLib.preprocess.slices import CropMap, PreprocessConfig, prepare_slices
from PETriageLib.preprocess.windows import get_window


def _mean_shrink(hu: np.ndarray, f: int) -> np.ndarray:
    h, w = (hu.shape[0] // f) * f, (hu.shape[1] // f) * f
    return np.asarray(hu[:h, :w], np.float32).reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _per_slice_lungs(volume, margin_mm: float = 10.0):
    spacing = pixel_spacing_of(volume)
    found = [lung_masks(volume.hu[k], spacing) for k in range(volume.num_slices)]  # 2D: one slice a call
    refined = keep_main_air_3d(np.stack([f[1] for f in found]))
    return [_slice_lung(b, refined[k], f, volume.hu.shape[1:], spacing, margin_mm)
            for k, (b, _, f) in enumerate(found)], found


def _per_slice_inputs(volume, indices, config: PreprocessConfig, lungs) -> np.ndarray:
    """Crop, anti-alias, resample and window each (slice, context slice) on its own."""
    spacing, shape, size, c = pixel_spacing_of(volume), volume.hu.shape[1:], config.input_size, config.context
    out = []
    for k in indices:
        crop = CropMap.fit(lungs[k].box, shape, size, spacing)
        r0, r1, c0, c1 = crop.box
        shrink = (1.0 / crop.scale[0], 1.0 / crop.scale[1])
        offset = [(0.5 - p) / s - 0.5 for p, s in zip(crop.pad, crop.scale)]
        u = np.arange(size) + 0.5
        inside = ((u >= crop.pad[0]) & (u <= size - crop.pad[0]))[:, None] & \
                 ((u >= crop.pad[1]) & (u <= size - crop.pad[1]))[None, :]
        hu = []
        for j in range(k - c, k + c + 1):
            img = np.asarray(volume.hu[min(max(j, 0), volume.num_slices - 1)][r0:r1, c0:c1], np.float32)
            if max(shrink) > 1.25:
                img = ndimage.gaussian_filter(img, sigma=[max(0.0, (s - 1.0) / 2.0) for s in shrink], mode="nearest")
            img = ndimage.affine_transform(img, shrink, offset=offset, output_shape=(size, size), order=1,
                                           mode="nearest")
            img[~inside] = AIR_HU
            hu.append(img)
        chans = [np.clip(np.stack(hu), w.low, w.high) for w in map(get_window, config.windows)]
        out.append(np.concatenate([(ch - w.level) * np.float32(2.0 / w.width)
                                   for ch, w in zip(chans, map(get_window, config.windows))]))
    return np.stack(out)


def _assert_same_lungs(batched, reference):
    assert len(batched) == len(reference)
    for k, (a, b) in enumerate(zip(batched, reference)):
        assert (a.has_lung, a.box, a.lung_fraction, a.scale) == (b.has_lung, b.box, b.lung_fraction, b.scale), k
        np.testing.assert_array_equal(a.mask, b.mask)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_block_mean_of_a_stack_is_the_mean_of_each_slice(dtype):
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 3000, (3, 101, 98)).astype(dtype)
    if dtype == np.float32:
        hu += rng.random(hu.shape, np.float32)  # not integers: the float path
    for f in (1, 2, 3, 4, 5):
        want = np.stack([_mean_shrink(s, f) for s in hu])
        np.testing.assert_array_equal(_shrink(hu, f), want)
        np.testing.assert_array_equal(_shrink(hu[1], f), want[1])


def test_stack_masks_equal_slice_masks_on_the_phantom(phantom_study):
    vol = phantom_study.volume
    spacing = pixel_spacing_of(vol)
    body, lungs, factor = lung_masks(vol.hu, spacing)
    for k in range(vol.num_slices):
        b, l, f = lung_masks(vol.hu[k], spacing)
        assert f == factor
        np.testing.assert_array_equal(body[k], b)
        np.testing.assert_array_equal(lungs[k], l)
    assert lungs.any() and not lungs.all()


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_analyse_lungs_in_chunks_equals_per_slice(phantom_study, chunk):
    ticks = []
    batched = analyse_lungs(phantom_study.volume, progress=lambda d, t, m: ticks.append(d), chunk=chunk)
    reference, _ = _per_slice_lungs(phantom_study.volume)
    _assert_same_lungs(batched, reference)
    n = phantom_study.volume.num_slices
    assert ticks[-1] == n and len(ticks) == -(-n // chunk)
    assert any(s.has_lung for s in batched)


@pytest.mark.parametrize("context,windows,size", [(0, ["vascular", "lung"], 64), (1, ["pe", "lung"], 96)])
def test_prepare_slices_equals_per_slice_on_the_phantom(phantom_study, context, windows, size):
    vol = phantom_study.volume
    lungs = analyse_lungs(vol)
    cfg = PreprocessConfig(windows, input_size=size, context=context)
    idx = [0, 3, 7, vol.num_slices - 1]
    got = prepare_slices(vol, idx, cfg, lungs=lungs)
    want = _per_slice_inputs(vol, idx, cfg, lungs)
    assert got.images.shape == want.shape == (4, len(windows) * (2 * context + 1), size, size)
    np.testing.assert_array_equal(got.images, want)


def test_batched_equals_per_slice_on_the_real_series(real_series_dir):
    vol = load_series(real_series_dir)
    lungs = analyse_lungs(vol)
    reference, _ = _per_slice_lungs(vol)
    _assert_same_lungs(lungs, reference)
    cfg = PreprocessConfig(["pe", "lung"], input_size=224, context=1)  # the shipped models' inputs
    idx = [k for k in range(0, vol.num_slices, 9) if lungs[k].has_lung]
    assert len(idx) >= 10
    got = prepare_slices(vol, idx, cfg, lungs=lungs).images
    np.testing.assert_array_equal(got, _per_slice_inputs(vol, idx, cfg, lungs))
