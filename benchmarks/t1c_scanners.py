"""Synthetic post-contrast T1w on held-out phantoms seen by other scanners: enhancement invented in the brain.

On real whole-head T1w the T1c model v1.2.0 brightens brain that does not enhance where the scan has thick slices
or a strong bias field (``benchmarks/t1c_real.py --heads``), but a real head has no post-contrast truth to prove
it. Here the held-out phantoms (seeds 1-10, never trained on) are re-acquired by fixed scanners with the engine's
training acquisition (:func:`MedGANTranslateLib.training.synth.acquire`: slice profile, grid, bias field, noise; no
gamma), native and post-contrast through the *same* scanner, so the truth is known on every voxel:

- ``1 mm``: the phantom's own resolution (its own bias and noise stay, plus 2 % noise);
- ``axial 5 mm``: 1 x 1 x 5 mm slices, as many clinical 2D T1w;
- ``bias``: 1 mm with a strong bias field (MONAI ``RandBiasField`` coefficient up to 0.12, as the real Siemens
  XA30 head's);
- ``axial 3 mm + bias``: both, milder (open_ms 01 has 3 mm slices).

Per phantom, scanner and model, on the scan's grid (the model's output comes back there): *invented* = mL of
grey and white matter (the tumour, the vessels and 3 voxels around them left out) that the model makes brighter
than the input by more than half the white matter's value (the truth there: 0 mL); *rim captured* = mean predicted
over mean true enhancement (T1c - T1) in the enhancing rim (1: all of it); *vessels captured* the same over the
venous sinuses and choroid plexus (``--vessels``: phantoms with them, :mod:`MedGANTranslateLib.phantom_vessels`);
*brain MAE* = mean |predicted - true T1c| over the same brain, in white-matter units.

    .venv/bin/python benchmarks/t1c_scanners.py --models v1.2.0=mr-t1-to-t1c-pix2pix trial=train_runs/RUN/model [--vessels]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MedGANTranslateLib.phantom_vessels import VESSEL_LABELS
from MedGANTranslateLib.training.data import load_phantom
from MedGANTranslateLib.training.synth import T1W_BOUNDS, Acquisition, acquire

ROOT = Path(__file__).resolve().parents[1]

#: The held-out phantoms' settings (the T1c recipe's validation phantoms).
PHANTOM = {"shape": [192, 224, 192], "spacing": [1.0, 1.0, 1.0], "tumour": True, "deform": True, "noise": True}
#: name: (voxel size x, y, z in mm, bias field coefficient)
SCANNERS: Dict[str, Tuple[Tuple[float, float, float], float]] = {
    "1 mm": ((1.0, 1.0, 1.0), 0.0),
    "axial 5 mm": ((1.0, 1.0, 5.0), 0.0),
    "bias": ((1.0, 1.0, 1.0), 0.12),
    "axial 3 mm + bias": ((1.0, 1.0, 3.0), 0.08),
}
GREY, WHITE, RIM, CORE = 5, 6, 10, 11  # phantom_labels.LABEL_NAMES
INVENTED_SHARE = 0.5  # brighter by more than half the white matter: as benchmarks/t1c_real.py --heads counts
NOISE = 0.02


def scanner(spacing: Sequence[float], bias: float, seed: int) -> Acquisition:
    """A fixed acquisition: the voxel size as the slice profile, half-voxel slice phase, Rician noise, no
    gamma, no defacing (the contrast fields are unused when re-acquiring an image)."""
    unused = np.zeros(len(T1W_BOUNDS), np.float32)
    return Acquisition(means=unused, stds=unused, spacing=np.asarray(spacing, float),
                       blur_fwhm_mm=np.asarray(spacing, float), phase=np.full(3, 0.5), bias_coefficient=bias,
                       bias_seed=seed, gamma=1.0, gamma_seed=0, noise_std=NOISE, rician=True, noise_seed=seed + 1,
                       scale=1000.0, integer=False, deface=None, description="fixed")


def acquired_pair(phantom: Dict[str, sitk.Image], acq: Acquisition) -> Tuple[sitk.Image, sitk.Image, np.ndarray]:
    """Native and post-contrast T1w through one scanner (white matter near ``acq.scale``), and the labels on
    their grid."""
    labels = sitk.GetArrayViewFromImage(phantom["labels"])
    white = float(np.median(sitk.GetArrayViewFromImage(phantom["t1"])[labels == WHITE]))
    t1, t1c = (acquire(sitk.Cast(phantom[name], sitk.sitkFloat32) / white, phantom["labels"], acq, noise_seed=seed,
                       gamma=False) for name, seed in (("t1", 1), ("t1c", 2)))
    on_grid = sitk.Resample(phantom["labels"], t1, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return t1, t1c, sitk.GetArrayFromImage(on_grid)


def scores(t1: np.ndarray, truth: np.ndarray, synthetic: np.ndarray, labels: np.ndarray, voxel_ml: float
           ) -> Dict[str, float]:
    """Invented enhancement (mL), rim captured and brain MAE (white-matter units), as the module says."""
    white = float(np.median(t1[labels == WHITE]))
    enhancing = ndimage.binary_dilation(np.isin(labels, (RIM, CORE, *VESSEL_LABELS)), iterations=3)
    brain = np.isin(labels, (GREY, WHITE)) & ~enhancing
    added = synthetic - t1

    def captured(where: np.ndarray):
        return round(float(added[where].mean() / (truth - t1)[where].mean()), 3) if where.any() else None

    return {"invented_ml": round(float((brain & (added > INVENTED_SHARE * white)).sum()) * voxel_ml, 2),
            "true_ml": round(float((brain & ((truth - t1) > INVENTED_SHARE * white)).sum()) * voxel_ml, 2),
            "rim_captured": captured(labels == RIM), "vessels_captured": captured(np.isin(labels, list(VESSEL_LABELS))),
            "brain_mae": round(float(np.abs(synthetic - truth)[brain].mean()) / white, 4)}


def summary(rows: List[Dict[str, Any]]) -> str:
    """Markdown: per model and scanner, the mean invented mL (range) and rim captured over the phantoms."""
    lines = ["| model | scanner | invented mL, mean (range) | rim captured | vessels captured | brain MAE (WM units) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for model in dict.fromkeys(r["model"] for r in rows):
        for name in SCANNERS:
            sel = [r for r in rows if r["model"] == model and r["scanner"] == name]
            if not sel:
                continue
            ml = [r["invented_ml"] for r in sel]
            rim, vessels = ([r[k] for r in sel if r.get(k) is not None] for k in ("rim_captured", "vessels_captured"))
            lines.append(f"| {model} | {name} | {np.mean(ml):.1f} ({min(ml):.1f}-{max(ml):.1f}) | "
                         f"{np.mean(rim):.2f} | {f'{np.mean(vessels):.2f}' if vessels else '–'} | "
                         f"{np.mean([r['brain_mae'] for r in sel]):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from MedGANTranslateLib.pipeline import Translator
    from MedGANTranslateLib.registry import resolve_model
    from MedGANTranslateLib.run_options import RunOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mr-t1-to-t1c-pix2pix"], help="model ids or LABEL=FOLDER")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--scanners", nargs="+", choices=list(SCANNERS), default=list(SCANNERS))
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "train_runs" / "phantoms")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "t1c_scanners.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vessels", action="store_true", help="phantoms with venous sinuses and choroid plexus")
    args = parser.parse_args(argv)
    models = []
    for spec in args.models:
        label, _, where = spec.rpartition("=")
        card = resolve_model(where)
        models.append((label or f"{card.id} v{card.version}", Translator(card, RunOptions(device="cpu", threads=args.threads))))
    rows = []
    for seed in args.seeds:
        phantom = load_phantom(seed, dict(PHANTOM, vessels=True) if args.vessels else PHANTOM, args.cache_dir)
        for name in args.scanners:
            spacing, bias = SCANNERS[name]
            t1, t1c, labels = acquired_pair(phantom, scanner(spacing, bias, 100 + seed))
            a, truth = sitk.GetArrayFromImage(t1), sitk.GetArrayFromImage(t1c)
            voxel_ml = float(np.prod(t1.GetSpacing())) / 1000.0
            for label, translator in models:
                synthetic = sitk.GetArrayFromImage(translator.translate([t1]).synthetic)
                row = {"seed": seed, "scanner": name, "model": label, **scores(a, truth, synthetic, labels, voxel_ml)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
