"""Keeps every test away from the user's own installed models: the model store (``MEDGAN_TRANSLATE_HOME``) is a
fresh, empty folder for the session, so a developer's installed models can neither hide nor shadow test models."""
from __future__ import annotations

import os
import shutil
import tempfile

_HOME = "MEDGAN_TRANSLATE_HOME"


def pytest_configure(config) -> None:
    config._medgan_home = tempfile.mkdtemp(prefix="medgan-test-home-")
    os.environ[_HOME] = config._medgan_home


def pytest_unconfigure(config) -> None:
    shutil.rmtree(getattr(config, "_medgan_home", ""), ignore_errors=True)
