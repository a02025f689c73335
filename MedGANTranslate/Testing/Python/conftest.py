"""Fixtures for the Slicer module's tests, run with plain pytest outside Slicer.

``slicer`` is Slicer's real Python package from slicer-core (MRML, the logics, ``slicer.util``). What
slicer-core lacks because it needs Qt comes from ``standin/``: ``qt``, ``ctk``, ``PyTorchUtils`` and, added to
the real ``slicer`` package only inside the ``slicer_standin`` fixture, ``slicer.app``, ``slicer.modules``,
the MRML widgets, ``ScriptedLoadableModule``, ``parameterNodeWrapper``, ``i18n`` and 5.12's ``packaging``.
The fixture removes all of that afterwards, so engine tests never see a ``qt`` or ``slicer.app``.
Options come from the ``standin`` marker: ``@pytest.mark.standin(version="5.12", testing=True, main_window=False)``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .slicer_test_support import MODULE_DIR, MODULE_FILE, STANDIN_DIR, STANDIN_SLICER_DIR, loaded_by_standin


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "standin(version, testing, main_window): options of the Slicer stand-in")


@pytest.fixture
def slicer_standin(tmp_path, request):
    """The real ``slicer`` package with the stand-in's application, configured afresh for one test."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -e '.[dev]'; Python >= 3.10)")
    marker = request.node.get_closest_marker("standin")
    options = dict(marker.kwargs) if marker else {}
    saved_path = list(sys.path)
    sys.path[:0] = [str(STANDIN_DIR), str(MODULE_DIR)]
    slicer.__path__.append(str(STANDIN_SLICER_DIR))
    errors = []
    try:
        import qt
        from slicer import _standin

        _standin.configure(str(tmp_path / "SlicerTemp"), **options)
        yield slicer
        errors = list(qt.slot_errors)
    finally:
        if "slicer._standin" in sys.modules:
            sys.modules["slicer._standin"].uninstall()
        slicer.__path__.remove(str(STANDIN_SLICER_DIR))
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if loaded_by_standin(n)]:
            del sys.modules[name]
        for name in ("_standin", "_app", "_uiloader"):
            vars(slicer).pop(name, None)
    assert not errors, "exceptions were raised inside Qt slots:\n" + "\n".join(errors)


@pytest.fixture
def module(slicer_standin):
    """``MedGANTranslate.py`` loaded the way Slicer loads a scripted module."""
    return slicer_standin._standin.load_module(str(MODULE_FILE))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Real model folders with tiny random-weight generators, written with the engine's own helpers."""
    import torch

    from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
    from MedGANTranslateLib.networks import build_network

    root = tmp_path_factory.mktemp("models")

    def make(folder: str, **kwargs):
        edit = kwargs.pop("edit", None)
        data = tiny_card_data(**kwargs)
        if edit is not None:
            edit(data)
        torch.manual_seed(0)
        save_model_folder(root / folder, data, network=build_network(data["architecture"]))

    def two_inputs(data):
        data["inputs"][0]["name_pattern"] = "*t1*"
        data["inputs"][1]["name_pattern"] = "*t2*"
        data["title"] = "Tiny two-input test model (MR T1w + T2w to PET)"

    def pet_difference(data):
        data["display"]["difference_window"] = 3

    def mirrored(data):
        data["inference"]["test_time_mirror"] = ["left-right"]

    def white_matter_units(data):
        data["preprocessing"]["normalization"] = [{"method": "white_matter", "reference": 0.5, "depth_mm": 0,
                                                   "source_range": [0, 1], "target_range": [-1, 1]}]
        data["postprocessing"]["output_mapping"]["input_units"] = True
        data["difference"] = {"without_reference": "minus_input"}
        data["display"]["difference_window"] = 0.25

    make("tiny-ct", model_id="tiny-ct", edit=mirrored)
    make("tiny-t1c", model_id="tiny-t1c", output_modality="MR", edit=white_matter_units)
    make("tiny-pet", model_id="tiny-pet", output_modality="PET", edit=pet_difference)
    make("tiny-two", model_id="tiny-two", inputs=2, output_modality="PET", edit=two_inputs)
    return root


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """The user's model store, here a temporary one; the engine's process inherits the variable."""
    monkeypatch.setenv("MEDGAN_TRANSLATE_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "models"


@pytest.fixture
def widget(module, slicer_standin):
    """The module panel as Slicer shows it (setup, then enter); cleaned up like on application exit."""
    panel = slicer_standin._standin.create_widget("MedGANTranslate")
    yield panel
    panel.cleanup()
