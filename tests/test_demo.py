"""The one-command demo end to end on a small phantom, and its preview."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

from MedGANTranslateLib.demo import PREVIEW_SKIPPED, run_demo

real_find_spec = importlib.util.find_spec
CT_KEYS = {"mae", "me", "rmse", "psnr", "ssim", "mae_air", "mae_soft_tissue", "mae_bone", "bone_dice"}


def test_demo_writes_every_output_aligned_with_the_phantom(make_model, tmp_path):
    card = make_model(roi=(16, 16, 16))
    paths = run_demo(tmp_path / "demo", model=str(card.folder), shape=(48, 56, 48), spacing=(4.0, 4.0, 4.0), device="cpu")
    assert {"inputs", "reference", "synthetic", "difference", "metrics", "preview"} <= set(paths)
    t1 = sitk.ReadImage(str(paths["inputs"][0]))
    ct = sitk.ReadImage(str(paths["reference"]))
    sct = sitk.ReadImage(str(paths["synthetic"]))
    diff = sitk.ReadImage(str(paths["difference"]))
    for image in (ct, sct, diff):
        assert image.GetSize() == t1.GetSize() and image.GetSpacing() == t1.GetSpacing()
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(diff),
        sitk.GetArrayFromImage(sct).astype(np.float32) - sitk.GetArrayFromImage(ct), atol=1e-3,
    )
    metrics = json.loads(paths["metrics"].read_text())
    assert CT_KEYS <= set(metrics) and metrics["mae"] > 0
    with Image.open(paths["preview"]) as png:
        assert png.size[0] > 800 and png.size[1] > 600
        colours = np.asarray(png.convert("RGB"))
    reds_and_blues = np.abs(colours[..., 0].astype(int) - colours[..., 2].astype(int)) > 60
    assert reds_and_blues.any(), "the difference panel uses a diverging colour map"


def test_demo_without_matplotlib_finishes_its_job_and_says_why_there_is_no_preview(make_model, tmp_path, monkeypatch):
    """A plain install has no preview extra: the demo writes everything else and one notice, no traceback."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    card = make_model(roi=(16, 16, 16))
    said = []
    paths = run_demo(tmp_path / "demo", model=str(card.folder), shape=(48, 56, 48), spacing=(4.0, 4.0, 4.0),
                     device="cpu", log=lambda level, message: said.append((level, message)))
    assert "preview" not in paths and not (tmp_path / "demo" / "preview.png").exists()
    assert {"synthetic", "difference", "metrics"} <= set(paths) and all(p.exists() for p in paths.values() if isinstance(p, Path))
    assert ("warning", PREVIEW_SKIPPED) in said
