"""The benchmark's baselines compute what they say: plain MONAI windows, and the same with the windows moved;
the GPU check refuses a machine without CUDA."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_lib import MonaiBaseline, MovedBaseline  # noqa: E402
from MedGANTranslateLib.run_options import RunOptions  # noqa: E402


def volume(shape=(1, 40, 36, 44), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_moved_windows_give_the_same_voxels_back_where_the_windows_do_not_matter(make_model):
    card = make_model()
    base, moved = MonaiBaseline(card, RunOptions(device="cpu")), MovedBaseline(card, RunOptions(device="cpu"))
    torch.manual_seed(3)
    pointwise = torch.nn.Conv3d(1, 1, 1).eval()  # each voxel on its own: windows cannot change anything
    base.network = moved.network = pointwise
    v = volume()
    a, _ = base._infer(v, None, None, None)
    b, _ = moved._infer(v, None, None, None)
    assert a.shape == b.shape == v.shape[1:]
    np.testing.assert_allclose(a, b, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(a, pointwise(torch.from_numpy(v)[None])[0, 0].numpy(), atol=1e-6)


def test_a_u_net_on_moved_windows_gives_another_output(make_model):
    card = make_model()  # a U-Net on 16^3 windows: each window's border is padding
    base, moved = MonaiBaseline(card, RunOptions(device="cpu")), MovedBaseline(card, RunOptions(device="cpu"))
    v = volume()
    a, _ = base._infer(v, None, None, None)
    b, _ = moved._infer(v, None, None, None)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() > 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="measures the GPU where there is one")
def test_the_gpu_check_refuses_a_machine_without_cuda_and_points_to_the_cpu_benchmark(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(script), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "needs a CUDA GPU" in proc.stderr and "run_benchmark.py" in proc.stderr
    assert not out.exists()


def test_the_monai_tutorial_pipeline_writes_the_models_output_on_the_input_grid(make_model, tmp_path):
    """The second baseline reads, reorients, resamples, normalises, runs, inverts and saves with MONAI alone; its
    output lies on the input's grid (an oblique, anisotropic scan) within the card's clip."""
    import SimpleITK as sitk
    from monai_pipeline import child_monai_pipeline

    card = make_model(edit=lambda data: data["preprocessing"].update(orientation="LPS", spacing=[2.0, 2.0, 2.0]))
    image = sitk.GetImageFromArray(np.random.default_rng(1).uniform(0, 400, (18, 30, 26)).astype(np.float32))
    image.SetSpacing((1.1, 0.9, 2.5))
    image.SetOrigin((12.0, -30.0, 7.5))
    angle = np.deg2rad(12)
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    source = tmp_path / "input.nii.gz"
    sitk.WriteImage(image, str(source))
    result = child_monai_pipeline(card, [str(source)], str(tmp_path / "out.nii.gz"), repeats=1, threads=1)
    out = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    assert out.GetSize() == image.GetSize()
    np.testing.assert_allclose(out.GetSpacing(), image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(out.GetOrigin(), image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(out.GetDirection(), image.GetDirection(), atol=1e-4)
    values = sitk.GetArrayFromImage(out)
    low, high = card.postprocessing["clip"]
    assert values.min() >= low and values.max() <= high and values.std() > 0
    assert result["windows_computed"] >= 1 and result["total_s"] >= result["infer_s"] > 0


@pytest.mark.parametrize("spec", [{"method": "range", "source_range": [0, 1600], "target_range": [-1, 1]},
                                  {"method": "percentile", "lower": 0.5, "upper": 99.5, "target_range": [-1, 1]}])
def test_the_tutorial_pipeline_normalises_as_the_card_says_over_the_whole_image(make_model, spec):
    """A fixed range maps as the engine maps it; percentiles are taken over the whole image (MONAI has no body
    mask); another method is refused, not approximated."""
    from monai_pipeline import _normalisation
    from MedGANTranslateLib.normalisation import linear_map

    card = make_model(edit=lambda data: data["preprocessing"].update(normalization=[spec]))
    values = np.random.default_rng(2).uniform(-100, 2000, (1, 8, 9, 10)).astype(np.float32)
    out = np.asarray(_normalisation(card, "x", 0)({"x": torch.from_numpy(values.copy())})["x"])
    source = spec.get("source_range") or np.percentile(values, [spec["lower"], spec["upper"]])
    np.testing.assert_allclose(out, linear_map(values.copy(), source, spec["target_range"], clip=True), atol=1e-5)
    zscore = make_model(edit=lambda data: data["preprocessing"].update(normalization=[{"method": "zscore"}]))
    with pytest.raises(SystemExit, match="not 'zscore'"):
        _normalisation(zscore, "x", 0)
