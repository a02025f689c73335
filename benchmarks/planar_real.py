"""2D models on real scans: does the slice-wise / tri-planar pipeline put every slice back where it came from?

A 2D network with an exactly known, asymmetric output (one 3×3 convolution: a wrong axis, a transposed or flipped
slice gives other values) runs tri-planar through the whole pipeline on real scans (oblique, anisotropic MRI; a
tilted, unevenly spaced CT series), and its output is compared, inside the body, with the bare network applied to
the axial, coronal and sagittal slices of the network-grid volume and averaged.

    .venv/bin/python benchmarks/planar_real.py [--real-data ../shared/real-data] [--out docs/images/planar_real.png]

prints max |pipeline − slice-wise network| and seconds per scan, and draws each scan's input and output in the
three planes.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from MedGANTranslateLib.imageio import read_image
from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.run_options import RunOptions

SCANS = ("t1/open_ms_patient01_T1W.nii.gz", "ct/ge_head_ct_dicom")
PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}  # array axes (z, y, x) of the LPS network grid
KERNEL = [[1.0, 2.0, 0.0], [-1.0, 3.0, 4.0], [0.0, -2.0, 1.0]]  # no symmetry


def kernel_network() -> nn.Module:
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(KERNEL)[None, None] * 0.25)
    return conv.eval()


def tri_planar_card(side: int) -> Dict:
    """Windows as large as the scan's largest slice, output in the network's own units (no mapping, no clip)."""
    data = tiny_card_data(model_id="kernel-2d", roi=(side, side), output_modality="MR",
                          architecture={"type": "torchscript"})
    data["inference"].update(planes=list(PLANES), cpu_precision="float32")
    data["preprocessing"]["orientation"] = "LPS"
    data["output"]["valid_range"] = [-10, 10]
    data["postprocessing"].update(output_mapping={"source_range": [-1, 1], "target_range": [-1, 1]}, clip=None,
                                  background_value=-1)
    return copy.deepcopy(data)


def slice_wise(net: nn.Module, volume: np.ndarray, axis: int) -> np.ndarray:
    stack = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, axis + 1, 0)))
    with torch.no_grad():
        return np.moveaxis(net(stack)[:, 0].numpy(), 0, axis)


def check_scan(path: Path, folder: Path) -> Tuple[float, float, sitk.Image, sitk.Image]:
    """(max |pipeline − slice-wise network| inside the body away from the array's faces, seconds, input, output)."""
    image = read_image(str(path))
    net = kernel_network()
    card = save_model_folder(folder, tri_planar_card(max(image.GetSize())), net, fmt="torchscript",
                             example_input=torch.zeros(1, 1, 16, 16))
    translator = Translator(card, RunOptions(device="cpu"))
    volume, _, grid = translator.prepare([image])
    if not grid.same_as_input:
        raise AssertionError(f"{path}: the network grid is not the input's grid; the comparison needs it to be")
    start = time.perf_counter()
    result = translator.translate([image])
    seconds = time.perf_counter() - start
    out = sitk.GetArrayFromImage(result.synthetic)
    expected = np.mean([slice_wise(net, volume, axis) for axis in PLANES.values()], axis=0)
    inside = sitk.GetArrayFromImage(result.body_mask) > 0
    inside[[0, -1]] = inside[:, [0, -1]] = inside[:, :, [0, -1]] = False  # window padding differs at the faces
    return float(np.abs(out[inside] - expected[inside]).max()), seconds, image, result.synthetic


def draw(rows, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 6, figsize=(18, 3.2 * len(rows)))
    for r, (name, image, synthetic, error) in enumerate(rows):
        for c, (label, im) in enumerate((("input", image), ("tri-planar output", synthetic))):
            array = sitk.GetArrayFromImage(im).astype(np.float32)
            centre = [n // 2 for n in array.shape]
            views = (array[centre[0]], array[:, centre[1]], array[:, :, centre[2]])
            lo, hi = np.percentile(array, [1, 99])
            sz, sy, sx = im.GetSpacing()[2], im.GetSpacing()[1], im.GetSpacing()[0]
            aspects = (sy / sx, sz / sx, sz / sy)
            for p, (view, aspect, plane) in enumerate(zip(views, aspects, PLANES)):
                ax = axes[r, 3 * c + p]
                ax.imshow(view, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect)
                ax.set_title(f"{name}\n{label}, {plane}" if p == 0 else f"{label}, {plane}", fontsize=8)
                ax.axis("off")
        axes[r, 3].text(0, -0.12, f"max |pipeline - slice-wise network| in the body = {error:.1e}",
                        transform=axes[r, 3].transAxes, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "real-data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs/images/planar_real.png"))
    args = parser.parse_args(argv)
    rows = []
    print("| scan | size (x, y, z) | max abs difference | seconds (tri-planar, CPU) |\n|---|---|---|---|")
    for scan in SCANS:
        with tempfile.TemporaryDirectory() as folder:
            error, seconds, image, synthetic = check_scan(Path(args.real_data) / scan, Path(folder))
        print(f"| {scan} | {image.GetSize()} | {error:.1e} | {seconds:.1f} |")
        rows.append((scan, image, synthetic, error))
    draw(rows, Path(args.out))
    print(f"picture: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
