"""Installs the engine's Python packages into Slicer, only when the user first clicks Translate.

torch comes through the PyTorch extension's ``PyTorchUtils`` (it picks the CUDA build matching the driver);
the rest after a confirmation listing the packages, through ``slicer.packaging.pip_ensure`` on Slicer 5.11+ or
``slicer.util.pip_install`` before that. Slicer's own numpy, SimpleITK and requests (and the torch build
PyTorchUtils chose) are never replaced: on every version a constraints file pins them at the installed
versions (pip then keeps them and installs whatever else a package needs). Checks read package metadata
only, so nothing heavy is imported into Slicer.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

TORCH_REQUIREMENT = ">=2.1"
PROTECTED_PACKAGES = ("numpy", "SimpleITK", "requests", "torch")
REQUESTER = "MedGANTranslate"

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?\s*$")


class DependencyError(RuntimeError):
    """A package could not be installed or has an unusable version; the message says what to do."""


class DependencyDeclined(DependencyError):
    """The user chose not to install; nothing was changed."""


def read_requirements(path: "str | Path") -> List[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def parse_requirement(requirement: str) -> Tuple[str, Optional[str]]:
    """``name>=version`` or ``name`` (the only forms the module's requirements use)."""
    match = _REQUIREMENT.match(requirement)
    if not match:
        raise ValueError(f"Unsupported requirement '{requirement}': use 'name' or 'name>=version'.")
    return match.group(1), match.group(2)


def version_tuple(version: str) -> Tuple[int, ...]:
    """Leading numeric release parts: '2.13.0+cpu' -> (2, 13, 0), '1.4rc1' -> (1, 4)."""
    parts = []
    for piece in version.split("+", 1)[0].split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group(0)))
        if digits.group(0) != piece:
            break
    return tuple(parts)


def installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_satisfied(requirement: str) -> bool:
    name, minimum = parse_requirement(requirement)
    version = installed_version(name)
    if version is None:
        return False
    return minimum is None or version_tuple(version) >= version_tuple(minimum)


def unmet(requirements: Sequence[str]) -> List[str]:
    return [r for r in requirements if not is_satisfied(r)]


def ensure_torch() -> None:
    """Installs torch with PyTorchUtils when missing; refuses (with the fix) when it is too old."""
    version = installed_version("torch")
    requirement = "torch" + TORCH_REQUIREMENT
    if version is not None:
        if is_satisfied(requirement):
            return
        raise DependencyError(
            f"PyTorch {version} is installed but MedGANTranslate needs {requirement}. Open the PyTorch Utils module, "
            "uninstall PyTorch, restart Slicer and click Translate again: the right version is then installed."
        )
    try:
        import PyTorchUtils
    except ImportError as exc:
        raise DependencyError(
            "The PyTorch extension is missing. Install 'PyTorch' from the Extensions Manager, restart Slicer and "
            "click Translate again."
        ) from exc
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT)
    if torch is None:
        raise DependencyDeclined("PyTorch was not installed, so the translation cannot run.")
    if not is_satisfied(requirement):
        raise DependencyError(f"PyTorch was installed but {requirement} is still not met (found {installed_version('torch')}).")


def protected_constraints() -> List[str]:
    """Pins for the packages Slicer ships, at the versions installed now."""
    pins = []
    for name in PROTECTED_PACKAGES:
        version = installed_version(name)
        if version is not None:
            pins.append(f"{name}=={version}")
    return pins


@contextlib.contextmanager
def constraints_file():
    """A temporary pip constraints file with :func:`protected_constraints`; removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="medgantranslate-constraints-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(protected_constraints()) + "\n")
        yield path
    finally:
        os.remove(path)


def ensure_packages(requirements_file: "str | Path") -> None:
    """Installs the unmet engine requirements after the user agreed; raises DependencyDeclined if not, and
    DependencyError if the installation failed."""
    import slicer

    requirements = read_requirements(requirements_file)
    missing = unmet(requirements)
    if not missing:
        return
    listing = "\n".join(f"  • {r}" for r in missing)
    question = (
        "MedGANTranslate needs these Python packages, which are not installed yet:\n\n"
        f"{listing}\n\nThey will be downloaded and installed into Slicer's Python (this may take a few minutes). "
        "Slicer's own numpy, SimpleITK and requests are left as they are. Install now?"
    )
    if not slicer.util.confirmOkCancelDisplay(question, "MedGANTranslate: install Python packages"):
        raise DependencyDeclined("The Python packages the translation needs were not installed.")
    try:
        import slicer.packaging as packaging
    except ImportError:
        packaging = None
    try:
        with constraints_file() as constraints:
            if packaging is not None:
                # asked above, so pip_ensure does not ask again: any RuntimeError it raises is a failure
                packaging.pip_ensure(packaging.load_requirements(str(requirements_file)), constraints=constraints,
                                     prompt_install=False, requester=REQUESTER, skip_in_testing=False)
            else:
                slicer.util.pip_install(["-c", constraints] + list(missing))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        raise DependencyError(f"Installing the Python packages failed: {exc}. See the Python console.") from exc
    still = unmet(requirements)
    if still:
        raise DependencyError(f"These packages are still missing after installation: {', '.join(still)}. See the Python console.")


def missing_packages(requirements_file: "str | Path") -> List[str]:
    """torch and the engine requirements that are not installed (or too old), without installing anything."""
    return unmet(["torch" + TORCH_REQUIREMENT] + read_requirements(requirements_file))


def ensure_all(requirements_file: "str | Path") -> None:
    ensure_torch()
    ensure_packages(requirements_file)
