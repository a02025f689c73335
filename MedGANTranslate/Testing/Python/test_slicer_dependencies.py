"""Dependencies: nothing at import or start-up; on Translate, torch through PyTorchUtils and the rest through
slicer.packaging (5.12+) or a confirmation plus pip_install (5.8), never replacing Slicer's own packages."""
from __future__ import annotations

import importlib.metadata

import pytest

REAL_VERSION = importlib.metadata.version


def _pretend_missing(monkeypatch, *names):
    """importlib.metadata.version raises for ``names`` (a set the test may empty to simulate installation),
    as if those packages were not installed."""
    missing = set(names)

    def version(name):
        if name in missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return REAL_VERSION(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    return missing


def test_requirement_helpers(slicer_standin):
    from MedGANTranslateSlicer import dependencies

    assert dependencies.parse_requirement("monai>=1.3") == ("monai", "1.3")
    assert dependencies.parse_requirement("pyyaml") == ("pyyaml", None)
    with pytest.raises(ValueError):
        dependencies.parse_requirement("torch<2")
    assert dependencies.version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert dependencies.version_tuple("1.4rc1") == (1, 4)
    assert dependencies.version_tuple("2.1") < dependencies.version_tuple("2.10")
    assert dependencies.is_satisfied("torch>=2.1") and not dependencies.is_satisfied("torch>=99")


def test_nothing_is_installed_or_asked_at_import_setup_or_enter(slicer_standin, module, monkeypatch):
    _pretend_missing(monkeypatch, "monai", "torch")
    widget = slicer_standin._standin.create_widget("MedGANTranslate")
    widget.exit()
    widget.enter()
    state = slicer_standin._standin.state
    assert state.pip_calls == [] and state.torch_calls == [] and state.dialogs == []


@pytest.mark.standin(version="5.8")
def test_slicer_58_asks_once_listing_the_packages_then_pins_slicers_own(slicer_standin, module, monkeypatch):
    missing = _pretend_missing(monkeypatch, "monai", "safetensors")
    state = slicer_standin._standin.state
    constraints = []

    def installed(requirements):
        constraints.append(open(requirements[1]).read())
        missing.clear()

    state.on_pip_install = installed
    module.MedGANTranslateLogic().ensureDependencies()
    asked = slicer_standin._standin.dialogs("confirmOkCancel")
    assert len(asked) == 1 and "monai>=1.3" in asked[0]["text"] and "safetensors>=0.4" in asked[0]["text"]
    assert "jsonschema" not in asked[0]["text"]
    (kind, requirements, _), = state.pip_calls
    assert requirements[0] == "-c" and requirements[2:] == ["monai>=1.3", "safetensors>=0.4"]
    pins = constraints[0].split()
    assert f"numpy=={REAL_VERSION('numpy')}" in pins and f"torch=={REAL_VERSION('torch')}" in pins
    assert any(p.lower().startswith("simpleitk==") for p in pins)
    assert state.torch_calls == []


@pytest.mark.standin(version="5.8")
def test_declining_installs_nothing(slicer_standin, module, monkeypatch):
    from MedGANTranslateSlicer.dependencies import DependencyDeclined

    _pretend_missing(monkeypatch, "monai")
    slicer_standin._standin.state.confirm_answer = False
    with pytest.raises(DependencyDeclined):
        module.MedGANTranslateLogic().ensureDependencies()
    assert slicer_standin._standin.state.pip_calls == []


@pytest.mark.standin(version="5.12")
def test_slicer_512_asks_then_uses_pip_ensure_with_the_same_pins_as_58(slicer_standin, module, monkeypatch):
    """skip_packages left out whatever a package needs from Slicer's own; a constraints file keeps them
    at Slicer's versions and lets pip install the rest, as on 5.8/5.10."""
    missing = _pretend_missing(monkeypatch, "pyyaml")
    state = slicer_standin._standin.state
    state.on_pip_install = lambda requirements: missing.clear()
    module.MedGANTranslateLogic().ensureDependencies()
    (asked,) = slicer_standin._standin.dialogs("confirmOkCancel")
    assert "pyyaml>=5.4" in asked["text"] and "monai" not in asked["text"]
    (call,) = state.pip_ensure_calls
    assert call["requirements"] == ["monai>=1.3", "safetensors>=0.4", "jsonschema>=4.0", "pyyaml>=5.4", "isal>=1.6", "einops>=0.6",
                                    "platformdirs>=3"]
    assert call["skip_packages"] is None and call["prompt_install"] is False and call["requester"] == "MedGANTranslate"
    pins = call["constraints"].split()
    assert f"numpy=={REAL_VERSION('numpy')}" in pins and f"torch=={REAL_VERSION('torch')}" in pins
    assert any(p.lower().startswith("simpleitk==") for p in pins)
    (kind, requirements, kwargs), = state.pip_calls
    assert requirements == ["pyyaml>=5.4"] and kwargs["skip_packages"] is None


@pytest.mark.standin(version="5.12")
def test_slicer_512_decline_is_reported_as_declined(slicer_standin, module, monkeypatch):
    from MedGANTranslateSlicer.dependencies import DependencyDeclined

    _pretend_missing(monkeypatch, "jsonschema")
    slicer_standin._standin.state.confirm_answer = False
    with pytest.raises(DependencyDeclined):
        module.MedGANTranslateLogic().ensureDependencies()
    assert slicer_standin._standin.state.pip_calls == [] and slicer_standin._standin.state.pip_ensure_calls == []


@pytest.mark.standin(version="5.12")
def test_slicer_512_other_runtime_errors_are_failures_not_a_decline(slicer_standin, module, monkeypatch):
    """pip_ensure raises RuntimeError for a decline and for other problems alike (5.12.3 packaging.py)."""
    from MedGANTranslateSlicer.dependencies import DependencyDeclined, DependencyError

    _pretend_missing(monkeypatch, "jsonschema")
    slicer_standin._standin.state.pip_ensure_error = RuntimeError("Another pip installation is already in progress")
    with pytest.raises(DependencyError, match="already in progress") as raised:
        module.MedGANTranslateLogic().ensureDependencies()
    assert not isinstance(raised.value, DependencyDeclined)


def test_missing_torch_goes_through_pytorchutils_with_the_version_requirement(slicer_standin, module, monkeypatch):
    missing = _pretend_missing(monkeypatch, "torch")
    state = slicer_standin._standin.state
    import PyTorchUtils

    real_install = PyTorchUtils.PyTorchUtilsLogic.installTorch

    def install(self, *args, **kwargs):
        result = real_install(self, *args, **kwargs)
        missing.discard("torch")
        return result

    monkeypatch.setattr(PyTorchUtils.PyTorchUtilsLogic, "installTorch", install)
    module.MedGANTranslateLogic().ensureDependencies()
    assert state.torch_calls == [{"askConfirmation": True, "forceComputationBackend": None, "torchVersionRequirement": ">=2.1"}]
    assert state.pip_calls == []


def test_declined_torch_stops_before_anything_else(slicer_standin, module, monkeypatch):
    from MedGANTranslateSlicer.dependencies import DependencyDeclined

    _pretend_missing(monkeypatch, "torch", "monai")
    slicer_standin._standin.state.confirm_answer = False
    with pytest.raises(DependencyDeclined):
        module.MedGANTranslateLogic().ensureDependencies()
    assert slicer_standin._standin.state.pip_calls == []


def test_too_old_torch_is_refused_with_the_fix(slicer_standin, module, monkeypatch):
    from MedGANTranslateSlicer.dependencies import DependencyError

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.13.1" if name == "torch" else REAL_VERSION(name))
    with pytest.raises(DependencyError, match="PyTorch 1.13.1 is installed but MedGANTranslate needs torch>=2.1.*PyTorch Utils"):
        module.MedGANTranslateLogic().ensureDependencies()
    assert slicer_standin._standin.state.torch_calls == []


def test_missing_pytorch_extension_is_explained(slicer_standin, module, monkeypatch):
    import sys

    from MedGANTranslateSlicer.dependencies import DependencyError

    _pretend_missing(monkeypatch, "torch")
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(DependencyError, match="Install 'PyTorch' from the Extensions Manager"):
        module.MedGANTranslateLogic().ensureDependencies()


def test_loading_the_module_imports_no_engine_dependency():
    """Slicer imports every module file at start-up: nothing heavy or not-yet-installed may load then."""
    import subprocess
    import sys

    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from .slicer_test_support import MODULE_FILE, STANDIN_DIR, STANDIN_SLICER_DIR

    code = (
        f"import sys, slicer; sys.path[:0] = [{str(STANDIN_DIR)!r}, {str(MODULE_FILE.parent)!r}]\n"
        f"slicer.__path__.append({str(STANDIN_SLICER_DIR)!r})\n"
        "import slicer._standin, tempfile\n"
        "slicer._standin.configure(tempfile.mkdtemp())\n"
        f"slicer._standin.load_module({str(MODULE_FILE)!r})\n"
        "heavy = {'torch', 'monai', 'safetensors', 'jsonschema', 'yaml', 'SimpleITK'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_translate_asks_for_missing_packages_and_stops_when_declined(slicer_standin, widget, tiny_models, monkeypatch):
    from .slicer_test_support import head_array, oblique_ijk_to_ras

    _pretend_missing(monkeypatch, "monai")
    state = slicer_standin._standin.state
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    volume = slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    widget.ui.inputSelector.setCurrentNode(volume)
    assert state.dialogs == [] and state.pip_calls == []
    state.confirm_answer = False
    widget.ui.applyButton.click()
    (asked,) = slicer_standin._standin.dialogs("confirmOkCancel")
    assert "monai>=1.3" in asked["text"]
    assert state.pip_calls == [] and widget.panel._job is None
    assert widget.ui.statusLabel.text.startswith("The Python packages the translation needs were not installed")
    assert slicer_standin._standin.dialogs("error") == []


def test_dependency_failure_is_shown_as_an_error(slicer_standin, widget, tiny_models, monkeypatch):
    import qt

    from .slicer_test_support import head_array, oblique_ijk_to_ras

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.0.1" if name == "torch" else REAL_VERSION(name))
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    widget.ui.inputSelector.setCurrentNode(
        slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR"))
    widget.ui.applyButton.click()
    (shown,) = slicer_standin._standin.dialogs("error")
    assert shown["text"].startswith("The translation could not start.\n\nPyTorch 2.0.1 is installed")
    assert widget.panel._job is None and widget.ui.applyButton.text == "Translate"
    assert len(qt.slot_errors) == 1  # tryWithErrorDisplay re-raises; PythonQt prints it to the console
    qt.slot_errors.clear()
