"""How well the body mask holds on real scans and phantoms: numbers per scan and a picture of each mask.

For each scan, on the default model's network grid (where the pipeline finds the mask):
- ``tissue``: voxels above the scan's own background noise floor (:func:`noise_floor` of the full-resolution
  scan), in connected pieces of at least 1 mL (a lone noisy air voxel is not tissue);
- ``outside %``: tissue left outside the mask, in % of all tissue (goal: at most 0.5 %);
- ``holes mL``: background enclosed by the mask in 3D (goal: none);
- ``excess mL``: mask voxels outside the tissue's filled hull and farther from tissue than the dilation margin
  plus one working-grid block (goal: none; air inside the head, such as sinuses, is not excess).

    .venv/bin/python benchmarks/body_mask_real.py [--real-data ../shared/real-data] [--out benchmarks/out/body_mask]

writes ``<name>.png`` per scan (mask outline in red, tissue outside the mask in yellow, three planes through the
mask's centre) and ``body_mask_real.png`` (all of them), and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

from MedGANTranslateLib.body_mask import body_mask  # noqa: E402
from MedGANTranslateLib.imageio import read_image  # noqa: E402
from MedGANTranslateLib.network_grid import to_network_grid  # noqa: E402
from MedGANTranslateLib.noise_floor import noise_floor  # noqa: E402
from MedGANTranslateLib.phantom import make_phantom  # noqa: E402
from MedGANTranslateLib.registry import resolve_model  # noqa: E402

REAL_SCANS = (
    "t1/open_ms_patient01_T1W.nii.gz",
    "t1/open_ms_patient04_T1W.nii.gz",
    "t1/philips_adni_mprage_1mm.nii.gz",
    "t1/siemens_xa30_t1w_2mm.nii.gz",
    "t1c/brats_gli_00001_t1n.nii.gz",
    "t1c/open_ms_patient07_T1_mni.nii.gz",
    "templates/avg152T1.nii.gz",
    "ct/ge_head_ct_dicom",
)


def tissue_of(values: np.ndarray, floor: float, spacing: Tuple[float, ...]) -> np.ndarray:
    """Voxels above ``floor`` in face-connected pieces of at least 1 mL."""
    above = sitk.GetArrayFromImage(sitk.Median(sitk.GetImageFromArray(np.asarray(values)), [1, 1, 1])) > floor
    labels, count = ndimage.label(above)
    sizes = np.bincount(labels.ravel(), minlength=count + 1) * float(np.prod(spacing)) / 1000.0
    keep = sizes >= 1.0
    keep[0] = False
    return keep[labels]


def filled_hull(distance: np.ndarray, spacing: Tuple[float, ...]) -> np.ndarray:
    """The tissue closed by a 5 mm ball and filled slice by slice along each axis: the head with its cavities.
    ``distance``: each voxel's distance from the tissue in mm (the closing's dilation)."""
    grown = np.pad(distance <= 5.0, 1, constant_values=True)
    hull = (ndimage.distance_transform_edt(grown, sampling=spacing[::-1]) > 5.0)[1:-1, 1:-1, 1:-1]
    for axis in range(3):
        hull = np.stack([ndimage.binary_fill_holes(p) for p in np.moveaxis(hull, axis, 0)], axis=axis)
    return hull


def mask_quality(image: sitk.Image, mask: sitk.Image, margin_mm: float) -> Dict[str, float]:
    """The numbers of the module docstring for one scan and its mask (both on one grid)."""
    values = sitk.GetArrayViewFromImage(image)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    spacing = image.GetSpacing()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    floor = noise_floor(values)
    tissue = tissue_of(values, floor, spacing)
    outside = tissue & ~inside
    enclosed = ndimage.binary_fill_holes(inside) & ~inside
    distance = ndimage.distance_transform_edt(~tissue, sampling=spacing[::-1])
    excess = inside & ~filled_hull(distance, spacing) & (distance > margin_mm)
    return {
        "floor": floor,
        "tissue_ml": tissue.sum() * voxel_ml,
        "mask_ml": inside.sum() * voxel_ml,
        "outside_pct": 100.0 * outside.sum() / max(1, tissue.sum()),
        "holes_ml": enclosed.sum() * voxel_ml,
        "excess_ml": excess.sum() * voxel_ml,
        "_outside": outside,
    }


def picture(image: sitk.Image, mask: sitk.Image, outside: np.ndarray, title: str, axes: List[plt.Axes]) -> None:
    """Three planes through the mask's centre: the scan in grey, the mask's outline in red, lost tissue in yellow."""
    values = sitk.GetArrayViewFromImage(image)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    centre = [int(c) for c in ndimage.center_of_mass(inside)]
    spacing = image.GetSpacing()
    high = float(np.percentile(values[inside], 99.5))
    planes = [
        (values[centre[0]], inside[centre[0]], outside[centre[0]], spacing[1] / spacing[0]),
        (values[:, centre[1]], inside[:, centre[1]], outside[:, centre[1]], spacing[2] / spacing[0]),
        (values[:, :, centre[2]], inside[:, :, centre[2]], outside[:, :, centre[2]], spacing[2] / spacing[1]),
    ]
    for ax, (plane, inner, lost, aspect) in zip(axes, planes):
        ax.imshow(plane, cmap="gray", origin="lower", vmin=float(values.min()), vmax=high, aspect=aspect)
        ax.contour(inner, [0.5], colors="red", linewidths=0.8)
        ax.imshow(np.ma.masked_where(~lost, lost), cmap="autumn_r", origin="lower", alpha=0.9, aspect=aspect)
        ax.set_axis_off()
    axes[0].set_title(title, fontsize=8, loc="left")


def cases(real_data: Path):
    """(name, image) for each real scan found, then phantom heads (T1w, T2w, CT) at 1 mm."""
    for relative in REAL_SCANS:
        path = real_data / relative
        if path.exists():
            yield Path(relative).name.replace(".nii.gz", ""), read_image(path)
        else:
            print(f"skipped {relative}: not found under {real_data}", file=sys.stderr)
    for seed in (1,):
        phantom = make_phantom(seed)
        yield f"phantom{seed}_t1", phantom.t1
        yield f"phantom{seed}_t2", phantom.t2
        yield f"phantom{seed}_ct", phantom.ct


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--real-data", type=Path, default=here.parent / "shared" / "real-data")
    parser.add_argument("--out", type=Path, default=here / "benchmarks" / "out" / "body_mask")
    parser.add_argument("--model", default="mr-t1-to-ct-pix2pix", help="whose network grid and mask settings")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    card = resolve_model(args.model)
    spec = card.postprocessing.get("body_mask", {})
    margin = float(spec.get("dilation_mm", 2.0)) + float(spec.get("working_spacing_mm", 2.0))
    rows = []
    found = list(cases(args.real_data))
    sheet, sheet_axes = plt.subplots(len(found), 3, figsize=(9, 2.6 * len(found)))
    for (name, scan), axes in zip(found, np.atleast_2d(sheet_axes)):
        image = to_network_grid(scan, card.preprocessing)
        start = time.perf_counter()
        mask = body_mask(image, spec)
        seconds = time.perf_counter() - start
        quality = mask_quality(image, mask, margin)
        title = (f"{name}: lost {quality['outside_pct']:.3f} % of tissue, holes {quality['holes_ml']:.1f} mL, "
                 f"excess {quality['excess_ml']:.1f} mL")
        outside = quality.pop("_outside")
        picture(image, mask, outside, title, axes)
        single, single_axes = plt.subplots(1, 3, figsize=(9, 3))
        picture(image, mask, outside, title, single_axes)
        single.tight_layout()
        single.savefig(args.out / f"{name}.png", dpi=80)
        plt.close(single)
        rows.append((name, image, quality, seconds))
    sheet.tight_layout()
    sheet.savefig(args.out / "body_mask_real.png", dpi=60)
    print("| scan | grid (mm) | noise floor | tissue mL | mask mL | tissue outside % | holes mL | excess air mL | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, image, q, seconds in rows:
        grid = "×".join(f"{s:.2g}" for s in image.GetSpacing())
        print(f"| {name} | {grid} | {q['floor']:.4g} | {q['tissue_ml']:.0f} | {q['mask_ml']:.0f} | "
              f"{q['outside_pct']:.3f} | {q['holes_ml']:.1f} | {q['excess_ml']:.1f} | {seconds:.2f} |")
    print(f"pictures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
