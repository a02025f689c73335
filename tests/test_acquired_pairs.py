"""``data.source: phantom_acquired``: the phantoms' paired MR images, each pair re-acquired by one random scanner
(same grid, slice profile, bias field, scale and noise draws for input and target).

Tiny phantoms (4.8 mm) and coarse acquisitions, as in tests/test_synth_data.py, so each test takes seconds."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.errors import MedGANError
from MedGANTranslateLib.training import train
from MedGANTranslateLib.training.acquired_pairs import realise_pair
from MedGANTranslateLib.training.config import complete_config
from MedGANTranslateLib.training.data import load_phantom
from MedGANTranslateLib.training.synth import acquire

from test_synth_data import COARSE, blocks, plain
from test_training import tiny_config

WHITE_MATTER, RIM, GREY_MATTER, VENTRICLES = 6, 10, 5, 7


def acquired_config(steps: int = 4, **synth) -> dict:
    """The training tests' tiny config predicting the phantom's T1c from its T1w, pairs re-acquired."""
    cfg = tiny_config("pix2pix", steps=steps)
    cfg["card"]["output"].update({"modality": "MR", "unit": "a.u.", "valid_range": [0, 1600]})
    settings = dict(COARSE, pool=2, patches_per_volume=3, describe_cases=2, fov_height_mm=[200.0, 260.0])
    settings.update(synth)
    cfg["data"].update({"source": "phantom_acquired", "target": "t1c", "synth": settings,
                        "focus_fraction": 0.5, "focus_threshold": 0.2})
    return cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("acquired_cache")


def on_grid(image: sitk.Image, grid: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def test_a_pair_acquired_without_gamma_differs_only_where_the_target_enhances_and_with_gamma_everywhere():
    labels = blocks()
    native = sitk.Cast(labels > 0, sitk.sitkFloat32)
    enhanced = native + 4.0 * sitk.Cast(labels == 5, sitk.sitkFloat32)  # one 12 mm cube enhances five-fold
    acq = plain((1.0, 1.0, 3.0), bias_coefficient=0.4, bias_seed=3, gamma=1.3, scale=250.0)
    distance = sitk.SignedMaurerDistanceMap(labels == 5, useImageSpacing=True, insideIsPositive=False)
    far = on_grid(distance > 8.0, acquire(native, labels, acq, gamma=False)) > 0  # 8 mm from the cube
    for gamma, expected in ((False, True), (True, False)):
        before, after = acquire(native, labels, acq, gamma=gamma), acquire(enhanced, labels, acq, gamma=gamma)
        a, b = sitk.GetArrayViewFromImage(before), sitk.GetArrayViewFromImage(after)
        inside = far & (a > 100.0)
        assert np.allclose(a[inside], b[inside], rtol=1e-5) == expected, f"gamma {gamma}"
        assert (b - a).max() > 0.5 * np.median(a[inside]), "the cube enhances"


def test_a_realisation_is_one_phantom_seen_by_one_scanner_with_its_enhancement_intact(cache):
    data = complete_config(acquired_config(noise=[0.0, 0.0], bias_coefficient=[0.3, 0.3], thick_slice_probability=0.0,
                                           deface_probability=0.0))["data"]
    anatomy, images, description = realise_pair(3, 7, data, cache)
    again = realise_pair(3, 7, data, cache)[1]
    t1, t1c = images["t1"], images["t1c"]
    assert set(images) == {"t1", "t1c"} and "mm, bias 0.30" in description
    assert t1.GetSize() == t1c.GetSize() and t1.GetOrigin() == t1c.GetOrigin() and t1.GetSpacing() == t1c.GetSpacing()
    assert np.array_equal(sitk.GetArrayViewFromImage(t1c), sitk.GetArrayViewFromImage(again["t1c"]))
    phantom = load_phantom(int(anatomy.split()[1]), data["phantom"], cache)
    labels = on_grid(phantom["labels"], t1)
    deep = np.asarray(sitk.GetArrayViewFromImage(sitk.BinaryErode(sitk.GetImageFromArray(
        (labels == WHITE_MATTER).astype(np.uint8)), [1, 1, 1])), bool)
    a, b = sitk.GetArrayViewFromImage(t1), sitk.GetArrayViewFromImage(t1c)
    deep &= (a > 0.5 * np.median(a[deep])) & (a < 2.0 * np.median(a[deep]))  # not where the field nearly blanks it
    ratio = b[deep] / a[deep]
    raw = sitk.GetArrayViewFromImage(phantom["t1c"])[sitk.GetArrayViewFromImage(phantom["labels"]) == WHITE_MATTER] / \
        sitk.GetArrayViewFromImage(phantom["t1"])[sitk.GetArrayViewFromImage(phantom["labels"]) == WHITE_MATTER]
    # one bias field for both: the white matter's T1c/T1 ratio is the phantom's own, however strong the field
    assert abs(np.median(ratio) - np.median(raw)) < 0.03 and np.std(ratio) < 2 * np.std(raw) + 0.02
    field = a[deep] / np.median(a[deep])
    assert field.std() > 3 * np.std(ratio), "the field itself is strong: the ratio stays flat because it is shared"
    rim = labels == RIM
    assert rim.sum() > 5 and np.median(b[rim] / a[rim]) > np.median(ratio) + 0.1, "the rim still enhances"


def test_the_images_of_a_pair_share_the_noise_draws_so_the_network_is_not_taught_to_smooth(cache):
    data = complete_config(acquired_config(noise=[0.05, 0.05]))["data"]
    data["inputs"], data["target"] = ["t1"], "t1"
    assert set(realise_pair(2, 7, data, cache)[1]) == {"t1"}, "an image named twice is acquired once"
    data["inputs"] = ["t1", "t2"]
    images = realise_pair(2, 7, data, cache)[1]
    noiseless = dict(data, synth=dict(data["synth"], noise=[0.0, 0.0]))
    clean = realise_pair(2, 7, noiseless, cache)[1]
    residual = {n: sitk.GetArrayViewFromImage(images[n]) - sitk.GetArrayViewFromImage(clean[n]) for n in ("t1", "t2")}
    scale = float(np.median(sitk.GetArrayViewFromImage(clean["t1"])[sitk.GetArrayViewFromImage(clean["t1"]) > 0]))
    bright = (sitk.GetArrayViewFromImage(clean["t1"]) > 0.3 * scale) & (sitk.GetArrayViewFromImage(clean["t2"]) > 0.3 * scale)
    assert residual["t1"][bright].std() > 0.01 * scale
    assert np.corrcoef(residual["t1"][bright], residual["t2"][bright])[0, 1] > 0.9


def test_config_refuses_what_a_scanner_cannot_reacquire_and_real_pairs_beside_it():
    bad = acquired_config()
    bad["data"]["target"] = "ct"
    with pytest.raises(MedGANError, match="phantom_acquired.*MR images"):
        complete_config(bad)
    bad = acquired_config()
    bad["data"]["real_pairs"] = {"pairs": ["brats_gli_00001"]}
    with pytest.raises(MedGANError, match="real_pairs"):
        complete_config(bad)
    bad = acquired_config()
    bad["validation"] = {"seeds": [101]}
    with pytest.raises(MedGANError, match="overlap"):
        complete_config(bad)
    with pytest.raises(MedGANError, match="pool"):
        complete_config(acquired_config(pool=0))
    with pytest.raises(MedGANError, match="brain_only_probability"):
        complete_config(acquired_config(brain_only_probability=1.5))
    for focus in ({"rim": 1.0}, {10: 0.0}, {10: "half"}, [10]):
        with pytest.raises(MedGANError, match="focus_labels"):
            complete_config(acquired_config(focus_labels=focus))


def test_focus_patches_centre_on_each_listed_label_with_its_weight(cache):
    from MedGANTranslateLib.training.data import PatchSampler, prepare_volume
    from MedGANTranslateLib.training.loop import card_template

    cfg = complete_config(acquired_config(focus_labels={RIM: 0.8, WHITE_MATTER: 0.2}, noise=[0.0, 0.0],
                                          fov_cut_probability=0.0, deface_probability=0.0))
    images = realise_pair(0, 7, cfg["data"], cache)[1]
    assert "labels" in images and "labels" not in realise_pair(0, 7, complete_config(acquired_config())["data"], cache)[1]
    plain = prepare_volume(images, ["t1"], "t1c", card_template(cfg), 0.2)
    volume = prepare_volume(images, ["t1"], "t1c", card_template(cfg), 0.2, {RIM: 0.8, 99: 0.5, WHITE_MATTER: 0.2})
    assert plain.focus_groups == () and len(volume.focus_groups) in (1, 2), "only labels with focus voxels"
    assert np.isin(np.concatenate(volume.focus_groups), volume.focus_index).all()
    volume.focus_groups = (volume.focus_index[:5], volume.focus_index[5:])
    volume.focus_weights = (0.9, 0.1)
    sampler = PatchSampler([volume], [8, 8, 8], focus_fraction=1.0)
    rng = np.random.default_rng(0)
    shape = volume.mask.shape
    first = {tuple(int(c) for c in np.unravel_index(i, shape)) for i in volume.focus_index[:5]}
    corners = [sampler._corner(rng, volume) for _ in range(400)]
    centred = np.mean([any(all(c <= p[a] < c + 8 for a, c in enumerate(corner)) for p in first) for corner in corners])
    assert 0.8 < centred < 0.98, "nine draws in ten from the first group"


def test_a_skull_stripped_pair_is_the_same_scan_zeroed_outside_one_brain_mask(cache):
    settings = dict(noise=[0.01, 0.01], deface_probability=0.0, fov_cut_probability=0.0)
    stripped_data = complete_config(acquired_config(brain_only_probability=1.0, **settings))["data"]
    whole_data = complete_config(acquired_config(**settings))["data"]
    anatomy, stripped, description = realise_pair(1, 7, stripped_data, cache)
    whole = realise_pair(1, 7, whole_data, cache)[1]
    assert "skull-stripped" in description and "skull-stripped" not in realise_pair(1, 7, whole_data, cache)[2]
    t1, t1c = (sitk.GetArrayFromImage(stripped[n]) for n in ("t1", "t1c"))
    kept = t1 > 0
    assert np.array_equal(kept, t1c > 0), "one mask for both images"
    for name, image in stripped.items():
        full = sitk.GetArrayViewFromImage(whole[name])
        assert np.array_equal(sitk.GetArrayViewFromImage(image)[kept], full[kept]), "the same scan inside the mask"
    labels = on_grid(load_phantom(int(anatomy.split()[1]), stripped_data["phantom"], cache)["labels"], stripped["t1"])
    assert not kept[np.isin(labels, (1, 12))].any(), "scalp and muscle are gone"
    assert kept[labels == VENTRICLES].mean() > 0.95, "the brain stays"
    lowest_grey = np.flatnonzero((labels == GREY_MATTER).any(axis=(1, 2)))[0]
    assert not kept[:max(lowest_grey - 2, 0)].any(), "the spinal canal is cut at the foramen magnum"


def test_training_on_reacquired_pairs_focuses_on_enhancement_and_describes_its_inputs(tmp_path, cache):
    card = train(acquired_config(steps=3), tmp_path / "run", cache_dir=cache)
    inputs = card.data["training_inputs"]
    assert inputs["cases"] == 2 and "phantom_acquired" in inputs["source"]
    from MedGANTranslateLib.training.loop import card_template
    from MedGANTranslateLib.training.synth import SynthSampler

    cfg = complete_config(acquired_config())
    sampler = SynthSampler(cfg, card_template(cfg), cache)
    sampler.paired(np.random.default_rng(0), 1)
    assert all(v.focus_index.size > 0 for v in sampler.volumes), "the tumour rim's enhancement is found"
