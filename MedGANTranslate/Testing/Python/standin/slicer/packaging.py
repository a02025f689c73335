"""Stand-in for ``slicer.packaging`` (Slicer 5.12+). Only importable in the "5.12" personality.

Requirements are ``packaging`` Requirement objects, as in Slicer. ``pip_ensure`` skips requirements
already met, asks with ``confirmOkCancelDisplay``, returns early in testing mode when ``skip_in_testing``,
raises RuntimeError when declined, and records instead of installing.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement

import slicer

from . import _standin


def load_requirements(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]


def load_pyproject_dependencies(path):
    raise NotImplementedError("not needed by the module")


def pip_check(req, _seen=None) -> bool:
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return req.specifier.contains(version, prereleases=True)


def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
               requester=None, skip_in_testing=True, show_progress=True):
    _standin.state.pip_ensure_calls.append({
        "requirements": [str(r) for r in requirements], "skip_packages": skip_packages, "requester": requester,
        "skip_in_testing": skip_in_testing, "prompt_install": prompt_install,
        "constraints": Path(constraints).read_text(encoding="utf-8") if constraints else None,
    })
    if _standin.state.pip_ensure_error is not None:
        raise _standin.state.pip_ensure_error
    missing = [r for r in requirements if not pip_check(r)]
    if not missing:
        return None
    if skip_in_testing and slicer.app.testingEnabled():
        return None
    if prompt_install:
        listing = "\n".join(f"• {r}" for r in missing)
        if not slicer.util.confirmOkCancelDisplay(f"{len(missing)} Python packages need to be installed.", requester, detailedText=listing):
            raise RuntimeError("User declined package installation")
    return pip_install([str(r) for r in missing], constraints=constraints, skip_packages=skip_packages, requester=requester)


def pip_install(requirements, constraints=None, no_deps_requirements=None, skip_packages=None, blocking=True,
                show_progress=True, requester=None, parent=None, logCallback=None, completedCallback=None):
    _standin.record_pip_install(requirements, {"constraints": constraints, "skip_packages": skip_packages})
    return [] if skip_packages is not None else None


def pip_uninstall(requirements, blocking=True, logCallback=None, completedCallback=None) -> None:
    _standin.state.pip_calls.append(("uninstall", requirements, {}))


def isPipInstallInProgress() -> bool:
    return False
