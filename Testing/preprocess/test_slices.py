"""Preprocessing: crop in HU, aspect-keeping resample with air padding, windows, and maps back to the slice."""
from __future__ import annotations

import numpy as np
import pytest
from support.dicom_factory import chest_hu, ct_volume

from PETriageLib.ingest.load import load_series
from PETriageLib.preprocess.lungs import analyse_lungs, fixed_box
from PETriageLib.preprocess.slices import CropMap, PreprocessConfig, prepare_slices
from PETriageLib.preprocess.windows import PRESETS, stack_windows


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(["vascular", {"name": "narrow", "level": 50, "width": 100}], 192, "fixed", 5.0)
    d = cfg.to_dict()
    assert d["windows"][0] == {"name": "vascular", "level": PRESETS["vascular"].level, "width": PRESETS["vascular"].width}
    assert PreprocessConfig.from_dict(d).to_dict() == d
    with pytest.raises(ValueError, match="crop must be one of"):
        PreprocessConfig(["lung"], crop="centre")
    with pytest.raises(ValueError, match="unknown window 'bone'"):
        PreprocessConfig(["bone"])


def test_prepared_slices_shapes_windows_and_lung_flags():
    hu = chest_hu(4, 96, 96, lung_slices=[1, 2])
    vol = ct_volume(hu, spacing=(3.0, 3.0, 5.0))
    cfg = PreprocessConfig(["mediastinal", "lung", "pe"], input_size=64)
    prep = prepare_slices(vol, [0, 1, 2, 3], cfg, lungs=analyse_lungs(vol))
    assert prep.images.shape == (4, 3, 64, 64) and prep.images.dtype == np.float32
    assert prep.images.min() >= -1.0 and prep.images.max() <= 1.0
    assert prep.has_lung.tolist() == [False, True, True, False]
    assert prep.crops[0].box == fixed_box((96, 96))  # no lung: fixed crop
    assert prep.crops[1].box != prep.crops[0].box
    same = prepare_slices(vol, [1], cfg)  # lungs found here when not given
    np.testing.assert_array_equal(same.images[0], prep.images[1])
    with pytest.raises(ValueError, match="lungs has 2 entries, the volume 4 slices"):
        prepare_slices(vol, [1], cfg, lungs=analyse_lungs(vol)[:2])


def test_aspect_kept_by_air_padding():
    hu = np.full((1, 100, 200), 40, np.int16)
    vol = ct_volume(hu, spacing=(1.0, 1.0, 1.0))
    cfg = PreprocessConfig(["mediastinal", "lung"], input_size=50, crop="fixed")
    prep = prepare_slices(vol, [0], cfg)
    crop = prep.crops[0]
    assert crop.box == (11, 89, 22, 178)  # 78 x 156 px
    img = prep.images[0]
    air = PRESETS["lung"].apply(np.float32(-1024))
    # 2:1 crop in a square: 12.5 px of air above and below, tissue (40 HU -> 0 in mediastinal) between
    assert np.all(img[1, :12] == air) and np.all(img[1, -12:] == air)
    assert np.all(img[0, 13:37] == 0.0)


def test_anisotropic_pixels_keep_physical_aspect():
    crop = CropMap.fit((0, 100, 0, 100), (100, 100), 64, pixel_spacing=(1.0, 0.5))  # 100 mm x 50 mm
    assert crop.scale == pytest.approx((0.64, 0.32)) and crop.pad == pytest.approx((0.0, 16.0))


def test_to_slice_places_maps_inside_the_box_only():
    crop = CropMap.fit((20, 80, 10, 130), (100, 150), 60, pixel_spacing=(1.0, 1.0))
    back = crop.to_slice(np.ones((20, 20), np.float32), (100, 150))
    assert back.shape == (100, 150) and back.dtype == np.float32
    assert np.all(back[20:80, 10:130] == 1.0) and back.sum() == 60 * 120


def test_model_round_trip_of_a_smooth_image():
    jj, ii = np.mgrid[0:120, 0:160].astype(np.float32)
    hu = 3.0 * ii - 2.0 * jj - 300.0  # linear ramp: bilinear resampling keeps it exactly, away from edges
    crop = CropMap.fit((10, 110, 20, 140), hu.shape, 96, pixel_spacing=(0.7, 0.7))
    model = crop.to_model(hu)
    back = crop.to_slice(model, hu.shape)
    inner = (slice(16, 104), slice(26, 134))
    np.testing.assert_allclose(back[inner], hu[inner], atol=1.0)
    coarse = crop.to_slice(model[::4, ::4] * 0 + 1.0)  # a low-resolution map (24 x 24)
    assert coarse[10:110, 20:140].min() == 1.0 and coarse.sum() == 100 * 120


def test_real_series_inputs(real_series_dir):
    vol = load_series(real_series_dir)
    lungs = analyse_lungs(vol)
    cfg = PreprocessConfig(["vascular", "lung"], input_size=160)
    prep = prepare_slices(vol, [0, 65, 130], cfg, lungs=lungs)
    assert prep.images.shape == (3, 2, 160, 160)
    assert prep.has_lung.tolist() == [True, True, False]
    lung_channel = prep.images[1, 1]
    assert (lung_channel < PRESETS["lung"].apply(np.float32(-700))).mean() > 0.25  # mostly lung in the crop


def test_window_presets_match_the_paper_and_rsna():
    spans = {name: (w.low, w.high) for name, w in PRESETS.items()}
    assert spans["lung"] == (-1150.0, 350.0)  # L-400/W1500
    assert spans["mediastinal"] == (-160.0, 240.0)  # L40/W400
    assert spans["vascular"] == (-1000.0, 1600.0)  # the paper's wide window
    assert spans["pe"] == (-250.0, 450.0)  # L100/W700
    hu = np.array([-3000, -1000, 300, 1600, 5000], np.float32)
    np.testing.assert_allclose(PRESETS["vascular"].apply(hu), [-1, -1, 0, 1, 1])  # clip, then zero-centred scale
    chans = stack_windows(np.zeros((2, 4, 4), np.int16), ["lung", {"name": "x", "level": 0, "width": 10}])
    assert chans.shape == (2, 2, 4, 4) and chans.dtype == np.float32
    assert np.all(chans[:, 0] == pytest.approx(400 * 2 / 1500)) and np.all(chans[:, 1] == 0)


def test_slice_context_channels_use_the_centre_crop_and_repeat_at_the_ends():
    hu = chest_hu(4, 96, 96, lung_slices=[1, 2, 3])
    hu[2, 40:50, 20:30] = 300  # something only slice 2 has
    vol = ct_volume(hu, spacing=(3.0, 3.0, 5.0))
    lungs = analyse_lungs(vol)
    cfg = PreprocessConfig(["lung", "pe"], input_size=64, context=1)
    prep = prepare_slices(vol, [0, 1, 3], cfg, lungs=lungs)
    assert prep.images.shape == (3, 6, 64, 64)
    crop = prep.crops[1]
    for w, name in enumerate(("lung", "pe")):  # window-major: lung k-1, k, k+1, then pe k-1, k, k+1
        for j, k in enumerate((0, 1, 2)):
            want = PRESETS[name].apply(crop.to_model(vol.hu[k]))
            np.testing.assert_allclose(prep.images[1, 3 * w + j], want, atol=1e-6)
    assert not np.allclose(prep.images[1, 2], prep.images[1, 1])  # slice 2 differs from slice 1
    np.testing.assert_array_equal(prep.images[0, 0], prep.images[0, 1])  # before the first slice: the first
    np.testing.assert_array_equal(prep.images[2, 5], prep.images[2, 4])  # after the last: the last
    plain = prepare_slices(vol, [0, 1, 3], PreprocessConfig(["lung", "pe"], input_size=64), lungs=lungs)
    np.testing.assert_array_equal(prep.images[:, [1, 4]], plain.images)  # the centres are the 2D inputs


def test_slice_context_in_config_dicts():
    cfg = PreprocessConfig(["lung"], context=2)
    assert cfg.to_dict()["context"] == 2 and PreprocessConfig.from_dict(cfg.to_dict()).context == 2
    assert "context" not in PreprocessConfig(["lung"]).to_dict()  # older cache keys unchanged
    meta = {"windows": [{"name": "lung", "level": -600, "width": 1500}], "config": {"context": 1}}
    assert PreprocessConfig.from_dict(meta).context == 1  # a checkpoint's meta: the model's setting
    with pytest.raises(ValueError, match="context must be >= 0"):
        PreprocessConfig(["lung"], context=-1)
