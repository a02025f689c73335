"""Template heads: label maps and CTs built on the real average-head templates (MNI-space average CT with skull,
tissue probability maps, avg152T1) in ``shared/real-data/templates``. Small grids (2 mm), so each test takes about
a second; they skip, saying where they looked, when the templates are absent."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MedGANTranslateLib.errors import InputError
from MedGANTranslateLib.template_atlas import CHANNELS, cormack_to_hounsfield, load_atlas, templates_folder
from MedGANTranslateLib.template_head import make_template_head
from MedGANTranslateLib.template_head_labels import LABEL_NAMES, TEETH

from real_data import REAL_DATA, real_file


@pytest.fixture(scope="module")
def templates():
    real_file("templates", "scct.nii.gz")
    return str(REAL_DATA / "templates")



def test_cormack_units_map_back_to_hounsfield():
    assert cormack_to_hounsfield(np.array([0.0, 900.0, 2000.0, 3100.0, 4024.0])).tolist() == \
        pytest.approx([-1024.0, -124.0, -24.0, 76.0, 1000.0])


def test_missing_templates_are_named(tmp_path):
    with pytest.raises(InputError, match="scct.nii.gz"):
        templates_folder(tmp_path)


def test_template_head_is_seeded_and_its_ct_follows_its_labels(templates):
    head = make_template_head(5, shape=(96, 116, 120), spacing=(2.0, 2.0, 2.0), templates=templates)
    again = make_template_head(5, shape=(96, 116, 120), spacing=(2.0, 2.0, 2.0), templates=templates)
    other = make_template_head(6, shape=(96, 116, 120), spacing=(2.0, 2.0, 2.0), templates=templates)
    labels, ct = sitk.GetArrayFromImage(head.labels), sitk.GetArrayFromImage(head.ct)
    assert np.array_equal(labels, sitk.GetArrayViewFromImage(again.labels))
    assert np.array_equal(ct, sitk.GetArrayViewFromImage(again.ct))
    assert not np.array_equal(labels, sitk.GetArrayViewFromImage(other.labels))
    assert head.labels.GetSpacing() == (2.0, 2.0, 2.0) and head.labels.GetSize() == (96, 116, 120)
    assert set(np.unique(labels)) <= set(LABEL_NAMES)
    present = np.bincount(labels.ravel(), minlength=14)
    for label in (1, 2, 3, 4, 5, 6, 8, 9, 12, TEETH):
        assert present[label] > 0, f"{LABEL_NAMES[label]} missing"
    means = head.parameters.ct_means
    for label in (0, 2, 5, 6, 12, TEETH):  # labels large enough for the blur to leave their median (not diploe)
        inside = ct[labels == label]
        assert abs(np.median(inside) - means[label]) < max(0.25 * abs(means[label]), 40.0), LABEL_NAMES[label]
    assert np.isfinite(ct).all() and ct.min() > -1200 and ct.max() < 4000


def test_template_head_has_real_anatomy_where_the_phantom_is_simplest(templates):
    """Skull base and paranasal air from the average CT, plus the procedural lower head: a head at 2 mm has bone
    under the brain (skull base), air inside the head (sinuses, airway, mastoids), teeth and vertebrae below the
    templates' field of view, and a skull of realistic thickness over the vertex."""
    head = make_template_head(11, shape=(96, 116, 120), spacing=(2.0, 2.0, 2.0), templates=templates)
    labels = sitk.GetArrayFromImage(head.labels)
    bone = np.isin(labels, (2, 3))
    zs = np.flatnonzero((labels == 5).any(axis=(1, 2)))  # grey matter: the cord below is white
    lowest_brain = zs.min()
    assert bone[lowest_brain - 6:lowest_brain + 10].sum() * 8 > 20_000, "skull base: > 20 mL of bone there"
    inside = np.isin(labels, (9,)).sum() * 8
    assert 10_000 < inside < 200_000, f"air inside the head: {inside / 1000:.0f} mL"
    assert (labels[:lowest_brain] == TEETH).sum() > 0 and bone[:lowest_brain - 10].sum() > 0
    column = labels[:, 58, 48]  # down through the vertex on the midline
    top_bone = np.flatnonzero(np.isin(column, (2, 3)))
    vault = top_bone[top_bone > zs.max() - 10]
    assert 2 <= vault.size <= 7, f"vertex skull {2 * vault.size} mm thick"


def test_atlas_maps_the_template_ct_to_hounsfield_and_pads_below(templates):
    atlas = load_atlas(templates)
    hu = atlas.fields[0]
    assert hu.min() >= -1024 and 700 < hu.max() < 900, "the average skull reaches ~770 HU"
    grey = atlas.fields[1] > 0.8
    assert 25 < np.median(hu[grey]) < 40, "grey matter where a head CT has it"
    assert atlas.fields.shape[0] == len(CHANNELS) and atlas.origin[2] < -72 - 40
    assert len(atlas.digest) == 64


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_every_axial_section_of_the_vault_is_a_closed_ring_of_bone(templates, seed):
    """The average skull is blurred away where skulls differ most (the thin temporal squama); the vault rule keeps
    every training skull closed: in each axial section from 15 mm above the eyes to 15 mm below the top of the
    brain, the brain lies in a piece of non-bone that bone cuts off from the outside (4-connected, so a diagonal
    step between bone voxels is no gap)."""
    head = make_template_head(seed, shape=(96, 116, 120), spacing=(2.0, 2.0, 2.0), templates=templates)
    labels = sitk.GetArrayFromImage(head.labels)
    bone = np.isin(labels, (2, 3))
    brain = np.isin(labels, (5, 6))
    eyes_z = int(np.nonzero(labels == 8)[0].mean())
    top = int(np.flatnonzero(brain.any(axis=(1, 2))).max())
    open_slices = []
    for z in range(eyes_z + 8, top - 7):
        pieces, _ = ndimage.label(np.pad(~bone[z], 1, constant_values=True))
        outside = pieces[0, 0]
        inside = np.unique(pieces[1:-1, 1:-1][brain[z]])
        if outside in inside:
            open_slices.append(z)
    assert not open_slices, f"open skull in sections {open_slices}"


@pytest.mark.parametrize("seed", [3, 17])
def test_falx_and_tentorium_are_thin_sheets_of_csf_inside_the_brain(templates, seed):
    """Real T1w shows the interhemispheric fissure and the tentorium as thin dark sheets inside the brain; the
    averaged templates have neither. Every template head has both: CSF on the midline above the corpus callosum
    and on the tentorium's surface over the cerebellum, with brain on either side of each sheet."""
    from MedGANTranslateLib.template_head import _grid_axes, _template_coordinates
    from MedGANTranslateLib.template_head_labels import _tentorium_height

    shape, spacing = (96, 116, 120), (2.0, 2.0, 2.0)
    head = make_template_head(seed, shape=shape, spacing=spacing, templates=templates)
    labels = sitk.GetArrayFromImage(head.labels)
    x, y, z = _template_coordinates(_grid_axes(shape, spacing), head.parameters)
    cranial = np.isin(labels, (4, 5, 6))  # CSF, grey, white
    csf = labels == 4
    over_callosum = (z > 34.0) & (z < 50.0) & (y > -30.0) & (y < 40.0)  # the averages blur the fissure most here
    falx = cranial & (np.abs(x) < 1.0) & over_callosum
    beside = cranial & (np.abs(x) > 8.0) & (np.abs(x) < 12.0) & over_callosum
    assert falx.sum() > 50 and csf[falx].mean() > 0.95
    assert csf[beside].mean() < 0.5, "the fissure is a sheet, not the whole hemisphere"
    surface = np.abs(z - _tentorium_height(x, y))
    tentorium = cranial & (surface < 1.0) & (y > 60.0) & (np.abs(x) < 40.0)
    above = cranial & (surface > 6.0) & (surface < 10.0) & (z > _tentorium_height(x, y)) & (y > 60.0)
    assert tentorium.sum() > 50 and csf[tentorium].mean() > 0.95
    assert csf[above].mean() < 0.5
