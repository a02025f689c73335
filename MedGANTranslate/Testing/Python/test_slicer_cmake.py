"""The extension's CMake files follow the Extension Wizard layout and package everything the module needs."""
from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
MODULE_DIR = REPO / "MedGANTranslate"
TOP = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
MODULE = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
API = json.loads((Path(__file__).with_name("slicer_api.json")).read_text(encoding="utf-8"))


def _set_values(text: str, variable: str):
    match = re.search(r"set\(\s*" + variable + r"\s+(.*?)\)\s*$", text, re.S | re.M)
    assert match, variable
    return match.group(1).split()


def _call_arguments(text: str, command: str):
    match = re.search(command + r"\((.*?)\)", text, re.S)
    assert match, command
    return match.group(1).split()


def test_extension_metadata():
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{field} "[^"]+"\)', TOP), field
    assert re.search(r'set\(EXTENSION_CATEGORY "(Image Synthesis|Filtering)"\)', TOP)
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in TOP
    assert "find_package(Slicer REQUIRED)" in TOP and "include(${Slicer_USE_FILE})" in TOP
    assert "add_subdirectory(MedGANTranslate)" in TOP and "## NEXT_MODULE" in TOP
    assert TOP.index("include(${Slicer_EXTENSION_GENERATE_CONFIG})") < TOP.index("include(${Slicer_EXTENSION_CPACK})")
    assert re.search(r"cmake_minimum_required\(VERSION 3\.16\.3\.\.\.[0-9.]+ FATAL_ERROR\)", TOP), "must accept Slicer 5.8's CMake"


def test_icon_and_screenshot_urls_point_at_repository_files():
    for variable, expected in (("EXTENSION_ICONURL", "MedGANTranslate/Resources/Icons/MedGANTranslate.png"),):
        url = re.search(rf'set\({variable} "([^"]+)"\)', TOP).group(1)
        assert url.endswith(expected) and (REPO / expected).is_file()


def test_module_lists_every_script_and_resource():
    scripts = _set_values(MODULE, "MODULE_PYTHON_SCRIPTS")
    resources = _set_values(MODULE, "MODULE_PYTHON_RESOURCES")
    listed = [s.replace("${MODULE_NAME}", "MedGANTranslate") for s in scripts + resources if not s.startswith("${ENGINE")]
    for path in listed:
        assert (MODULE_DIR / path).is_file(), path
    glue = {f"MedGANTranslateSlicer/{p.name}" for p in (MODULE_DIR / "MedGANTranslateSlicer").glob("*.py")}
    assert glue <= set(listed), f"not packaged: {glue - set(listed)}"
    for needed in ("MedGANTranslate.py", "Resources/UI/MedGANTranslate.ui", "Resources/Icons/MedGANTranslate.png",
                   "Resources/requirements.txt"):
        assert needed in listed
    assert "${ENGINE_SCRIPTS}" in scripts and "${ENGINE_RESOURCES}" in resources


def test_engine_globs_cover_the_engine_package():
    scripts = re.search(r"file\(GLOB_RECURSE ENGINE_SCRIPTS .*?(\S+)\)", MODULE).group(1)
    resources = re.search(r"file\(GLOB ENGINE_RESOURCES .*?(\S+)\)", MODULE).group(1)
    engine = MODULE_DIR / "MedGANTranslateLib"
    py = [p.relative_to(MODULE_DIR).as_posix() for p in engine.rglob("*.py")]
    assert py and all(fnmatch.fnmatch(p, scripts.split("}/", 1)[1]) for p in py)
    schemas = [p.relative_to(MODULE_DIR).as_posix() for p in (engine / "schemas").glob("*.json")]
    assert schemas and all(fnmatch.fnmatch(p, resources.split("}/", 1)[1]) for p in schemas)


def test_models_are_installed_where_the_registry_looks():
    """The engine's registry reads <engine>/../Resources/Models; CMake copies ../models/<id>/ there."""
    registry = (MODULE_DIR / "MedGANTranslateLib" / "registry.py").read_text(encoding="utf-8")
    assert '"Resources" / "Models"' in registry
    assert "${CMAKE_CURRENT_SOURCE_DIR}/../models" in MODULE
    assert "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/Resources/Models/" in MODULE
    assert "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources/Models/" in MODULE
    assert "*/model.json" in MODULE and "*/*.safetensors" in MODULE


def test_macros_use_only_their_documented_keywords():
    spec = API["cmake.slicerMacroBuildScriptedModule"]
    keywords = set(spec["options"]) | set(spec["oneValueArgs"]) | set(spec["multiValueArgs"])
    arguments = _call_arguments(MODULE, "slicerMacroBuildScriptedModule")
    used = {a for a in arguments if a.isupper() and not a.startswith("$")}
    assert used <= keywords and {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS"} <= used
    unittest_spec = API["cmake.slicer_add_python_unittest"]
    arguments = _call_arguments(MODULE, "slicer_add_python_unittest")
    assert {a for a in arguments if a.isupper() and not a.startswith("$")} <= set(unittest_spec["oneValueArgs"]) | set(unittest_spec["multiValueArgs"])
    assert "SCRIPT" in arguments and "if(BUILD_TESTING)" in MODULE


def test_requirements_file_is_what_the_engine_needs():
    """The engine's dependencies (pyproject) less the packages Slicer ships or PyTorchUtils installs."""
    lines = [l.strip() for l in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    engine = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    slicer_provides = ("torch", "simpleitk", "numpy", "requests", "scipy", "pydicom")
    assert lines == [d for d in engine if not d.lower().startswith(slicer_provides)]
    assert "isal>=1.6" in lines


def test_extensions_index_entry_passes_the_index_checks_that_run_offline():
    """What Slicer/ExtensionsIndex scripts/check_description_files.py checks without a network: the catalog
    entry schema v1.0.2 (required and allowed keys), a known category, an https scm_url whose repository
    name starts with 'Slicer', the CMake project named as the entry, a LICENSE at the top.
    (It also downloads the icon and screenshots and asks GitHub for the '3d-slicer-extension' topic.)"""
    entry_file = REPO / "ExtensionsIndex" / "MedGANTranslate.json"
    entry = json.loads(entry_file.read_text(encoding="utf-8"))
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies", "dicom_support_rule",
               "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in TOP
    assert entry["scm_url"].startswith("https://") and Path(entry["scm_url"]).stem.startswith("Slicer")
    assert entry["build_dependencies"] == ["PyTorch"] and 1 <= entry["tier"] <= 5
    assert re.search(r"^project\((\w+)\)", TOP, re.M).group(1) == entry_file.stem
    assert (REPO / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    repo_slug = Path(entry["scm_url"]).stem
    assert all(repo_slug in url for url in _set_values(TOP, "EXTENSION_ICONURL") + _set_values(TOP, "EXTENSION_SCREENSHOTURLS"))
