"""Synthetic post-contrast T1w on real native / post-contrast pairs (issue 23, item 4).

``real-data/t1c`` holds two real pairs of the same head before and after gadolinium: a BraTS glioma
(``brats_gli_00001``: t1n / t1c, skull-stripped, 1 mm) and an MS patient in MNI space (``open_ms_patient07``:
T1 / T1POST, brain only, 1 mm). Each pair is measured as follows (the pieces are in
:mod:`MedGANTranslateLib.training.real_pairs`, which training shares):

1. *Alignment*: the T1c is registered rigidly to the T1 (Mattes MI on 2 mm copies). The open_ms pair moves by at
   most 0.3-0.4 mm and is used as it is; the BraTS pair moves by 1.2-1.3 mm (0.73 mm along z, under 0.2 degrees,
   the same for three sampling seeds), above the 1 mm tolerance, so its T1c is resampled (linear) through that
   transform.
2. *Masks*: the brain is where both scans are above 0, holes filled, eroded by 2 mm; the normal-appearing white
   matter (NAWM) is the brightest of three Otsu classes of the T1 in the brain, eroded by one voxel (found on the
   T1 alone, so the same voxels for every image compared).
3. *Model input*: the T1 times one factor that puts its NAWM median at 810 a.u., the value the same estimator
   gives on the training phantoms, then ``Translator.translate`` with the card's settings (preprocessing to
   output on the T1's grid). One row also runs the T1 as stored ("raw"): since v1.2.0 the card normalises to white
   matter itself (:mod:`MedGANTranslateLib.white_matter`), so the two rows differ only by the engine's estimate
   (20 mm deep) against this module's (the whole brain); v1.1.0 read a fixed 0-1600 scale and failed on it.
4. *Normalisation*: every image compared (T1, true T1c, predicted T1c, baselines) is divided by its own median
   over the NAWM, so 1 is white matter and the scanner's gain is gone: values are in NAWM units.

Metrics, inside the brain (:func:`t1c_scores`, pure numpy, importable):

- ``mae``: mean |predicted - true| T1c in NAWM units; ``ssim``: the engine's SSIM (7-voxel window, data range
  of the true T1c in the brain) of predicted against true T1c;
- *enhancement* ``E = T1c - T1`` (NAWM units) per voxel, true and predicted. The *top voxels* are the 1 % of the
  brain with the largest true E (the glioma's enhancing rim, vessels, choroid plexus, dura at the edge);
  ``E_true`` and ``E_pred`` are the means of E over them, ``captured = E_pred / E_true`` (0: no enhancement
  predicted, 1: all of it), ``mae_E_top`` the mean |E_pred - E_true| there, ``ratio_true`` / ``ratio_pred`` the
  T1c/T1 ratio of their means there ("the real scan doubles": ratio 2);
- ``r_E``: Pearson correlation of predicted with true E over the whole brain (none for a constant prediction).

Baselines, measured by the same code: ``T1c = T1`` (no enhancement: E = 0), and a global linear map
``T1c = a*T1 + b`` (NAWM units, least squares over the brain) fitted on the *other* pair (held-out) and, as an
oracle no model can beat with one global map, on the pair itself. (A global scaling alone is the identity here:
the NAWM normalisation divides it out.)

Each model runs twice: through the card's settings (the normal pipeline: for this fully convolutional card one
window over the whole brain, 144 x 208 x 160 voxels on the BraTS pair) and on 64³ windows (``--roi 64 64 64``,
the size the shipped model was trained on). On the BraTS brain the single large window gives bright
chequered blobs around the ventricles that the 64³ windows do not (the network never saw a field of view that
large around a point far from any padding); on the open_ms brain the two agree.

A model whose card says it was trained on a pair (``training.config.data.real_pairs.pairs``) is not measured on
that pair: its rows are for held-out pairs only.

    .venv/bin/python benchmarks/t1c_real.py [--real-data ../shared/real-data] [--out benchmarks/out/t1c_real]
        [--models mr-t1-to-t1c-pix2pix LABEL=FOLDER ...] [--picture docs/images/t1c_real.png]
        [--picture-pairs open_ms_patient07] [--no-trained-windows] [--write-card]

prints a Markdown table (rows: pair x model or baseline) and writes ``results.json``, one picture per pair (T1,
true T1c, each model's predicted T1c on the slice with most top voxels; true and predicted E) in ``--out`` and the
overview ``--picture`` of ``--picture-pairs``. The overview shows only the CC-BY open_ms pair unless told
otherwise: the BraTS pair's terms say to use it from the shared folder and not commit it, and a picture of it in
the repository would be a copy of part of it. About 2 minutes on 2 CPU cores for three models.

    .venv/bin/python benchmarks/t1c_real.py --heads [NAME ...] [--models ...] [--heads-picture PATH]

runs the models instead on the real whole-head T1w scans under ``t1/`` (:data:`HEADS`; no post-contrast scan
exists for them): :func:`measure_head` gives the synthetic T1c's white matter over the input's (about 1 for a
model that reads the scan on its own scale) and the scan warnings, written to ``heads.json``, and
:func:`heads_picture` draws each head's axial slice with most white matter, input and each model's output on the
input's own grey scale. ``--write-card`` puts the first model's numbers into its bundled card
(``validation.real_pairs``, or ``validation.real_heads_enhancement`` with ``--heads``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

TOP_SHARE = 0.01
TRAINED_WINDOW = (64, 64, 64)  #: the window the shipped model was trained on; the card's default is one large window
WINDOW_LABEL = "64³ windows"
DEEP_MM = 5.0  #: the deep brain: this far inside the (already 2 mm eroded) brain mask
MODEL = "mr-t1-to-t1c-pix2pix"
MODELS_FOLDER = Path(__file__).resolve().parents[1] / "models"  #: --write-card writes only the bundled cards there


def enhancement(t1n: np.ndarray, t1cn: np.ndarray) -> np.ndarray:
    """E = T1c - T1 in NAWM units."""
    return np.asarray(t1cn, np.float64) - np.asarray(t1n, np.float64)


def top_voxels(e_true: np.ndarray, brain: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """The ``share`` of the brain's voxels with the largest true enhancement (ties at the cut included)."""
    cut = np.quantile(e_true[brain], 1.0 - share)
    return brain & (e_true >= cut)


def pearson(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    a, b = np.asarray(a, np.float64) - np.mean(a), np.asarray(b, np.float64) - np.mean(b)
    den = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return None if den == 0 else float(np.sum(a * b) / den)


def deep_region(brain: np.ndarray, depth_mm: float = None, spacing_mm: float = 1.0) -> np.ndarray:
    """Brain voxels at least ``depth_mm`` inside the brain mask (away from the dura, the venous sinuses and the
    skull-stripping edge, where most of the strongest enhancement of a brain-only scan lies)."""
    from scipy import ndimage

    depth_mm = DEEP_MM if depth_mm is None else depth_mm
    return ndimage.distance_transform_edt(np.asarray(brain, bool)) * spacing_mm >= depth_mm


def _top_stats(t1n, true_n, pred_n, e_true, e_pred, region, share) -> Dict[str, Optional[float]]:
    top = top_voxels(e_true, region, share)
    et, ep = float(np.mean(e_true[top])), float(np.mean(e_pred[top]))
    return {"E_true": et, "E_pred": ep, "captured": ep / et if et > 0 else None,
            "mae_E_top": float(np.mean(np.abs(e_pred[top] - e_true[top]))),
            "ratio_true": float(np.mean(true_n[top]) / np.mean(t1n[top])),
            "ratio_pred": float(np.mean(pred_n[top]) / np.mean(t1n[top])), "top_voxels": int(top.sum())}


def t1c_scores(t1n: np.ndarray, true_n: np.ndarray, pred_n: np.ndarray, brain: np.ndarray,
               share: float = TOP_SHARE, ssim: bool = True, deep: Optional[np.ndarray] = None) -> Dict[str, Optional[float]]:
    """The module's metrics for one predicted T1c (all three images in NAWM units, (z, y, x), ``brain`` boolean);
    with ``deep`` (:func:`deep_region`) the top-voxel numbers again over the deep brain's top ``share``, keys
    ending in ``_deep``."""
    from MedGANTranslateLib.metrics import image_metrics

    brain = np.asarray(brain, bool)
    e_true, e_pred = enhancement(t1n, true_n), enhancement(t1n, pred_n)
    out: Dict[str, Optional[float]] = {"mae": float(np.mean(np.abs(pred_n[brain] - true_n[brain])))}
    out["ssim"] = image_metrics(pred_n, true_n, brain, "MR")["ssim"] if ssim else None
    out.update(_top_stats(t1n, true_n, pred_n, e_true, e_pred, brain, share))
    out["r_E"] = pearson(e_pred[brain], e_true[brain])
    if deep is not None:
        out.update({f"{k}_deep": v for k, v in _top_stats(t1n, true_n, pred_n, e_true, e_pred, deep, share).items()})
    return out


DEPTH_BANDS_MM = ((0.0, 3.0), (3.0, 10.0), (10.0, float("inf")))  #: distance inside the brain mask, for top_by_depth


def top_by_depth(t1n: np.ndarray, true_n: np.ndarray, predictions: Dict[str, np.ndarray], brain: np.ndarray,
                 spacing_mm: float = 1.0) -> List[Dict[str, Any]]:
    """Where the top voxels lie, per band of :data:`DEPTH_BANDS_MM` inside the brain mask (its edge is the
    skull-stripping's, where sinuses and dura are cut; deeper lie veins in sulci and cisterns, the plexus, a
    lesion): their share, the T1 there (median, NAWM units), the mean true E and each prediction's."""
    from scipy import ndimage

    e_true = enhancement(t1n, true_n)
    top = top_voxels(e_true, brain)
    depth = ndimage.distance_transform_edt(np.asarray(brain, bool)) * spacing_mm
    rows = []
    for low, high in DEPTH_BANDS_MM:
        band = top & (depth >= low) & (depth < high)
        if band.any():
            rows.append({"band_mm": [low, None if np.isinf(high) else high], "share": round(float(band.sum() / top.sum()), 3),
                         "t1": round(float(np.median(t1n[band])), 3), "e_true": round(float(e_true[band].mean()), 3),
                         "e_pred": {label: round(float((pred - t1n)[band].mean()), 3) for label, pred in predictions.items()}})
    return rows


def fit_linear(t1n: np.ndarray, true_n: np.ndarray, brain: np.ndarray) -> Tuple[float, float]:
    """Least-squares ``a, b`` of ``true_n ~ a * t1n + b`` over the brain."""
    a, b = np.polyfit(np.asarray(t1n[brain], np.float64), np.asarray(true_n[brain], np.float64), 1)
    return float(a), float(b)


def trained_pairs(card) -> List[str]:
    """Real pairs a model's card says it was trained on (``training.config.data.real_pairs.pairs``)."""
    data = card.data.get("training", {}).get("config", {}).get("data", {})
    return list((data.get("real_pairs") or {}).get("pairs", []))


@dataclass
class Measured:
    pair: str
    t1n: np.ndarray
    true_n: np.ndarray
    brain: np.ndarray
    nawm: np.ndarray
    alignment: Dict[str, Any]
    deep: np.ndarray
    flip_rows: bool  #: the grid's rows run anterior (MNI NIfTI): shown flipped, anterior up as for the others
    rows: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)
    predictions: Dict[str, np.ndarray] = field(default_factory=dict)


def normalised(values: np.ndarray, nawm: np.ndarray) -> np.ndarray:
    from MedGANTranslateLib.training.real_pairs import nawm_value

    values = np.asarray(values, np.float32)
    return values / nawm_value(values, nawm)


def measure_pair(name: str, root: Path, models: Sequence[Tuple[str, Any, Any]], raw_for: Optional[str]) -> Measured:
    """The pair prepared, each model's prediction scored (skipping models trained on it), and the identity and
    oracle baselines (the other-pair baseline needs both pairs: :func:`cross_baselines`)."""
    from MedGANTranslateLib.training.real_pairs import pair_files, prepare_pair
    from MedGANTranslateLib.imageio import read_image

    pair = prepare_pair(name, root)
    t1 = sitk.GetArrayFromImage(pair.t1)
    t1n, true_n = normalised(t1, pair.nawm), normalised(sitk.GetArrayFromImage(pair.t1c), pair.nawm)
    m = Measured(name, t1n, true_n, pair.brain, pair.nawm, pair.alignment, deep_region(pair.brain),
                 pair.t1.GetDirection()[4] < 0)
    print(f"{name}: alignment {pair.alignment}; T1 x {pair.t1_factor:.4g}, T1c x {pair.t1c_factor:.4g} to the "
          f"phantom scale; brain {int(pair.brain.sum())} voxels, NAWM {int(pair.nawm.sum())}", flush=True)
    m.rows.append(("baseline: T1c = T1 (no enhancement)", t1c_scores(t1n, true_n, t1n, pair.brain, deep=m.deep)))
    a, b = fit_linear(t1n, true_n, pair.brain)
    m.rows.append((f"baseline: global linear, oracle (fitted on this pair: {a:.3f} T1 + {b:.3f})",
                   t1c_scores(t1n, true_n, a * t1n + b, pair.brain, deep=m.deep)))
    for label, card, translator in models:
        if name in trained_pairs(card):
            print(f"  {label}: trained on {name}, not measured on it", flush=True)
            continue
        result = translator.translate([pair.t1])
        pred = normalised(sitk.GetArrayFromImage(result.synthetic), pair.nawm)
        scores = t1c_scores(t1n, true_n, pred, pair.brain, deep=m.deep)
        scores["seconds"] = round(result.seconds, 2)
        scores["warnings"] = [w.code for w in result.scan.warnings] if result.scan else []
        m.rows.append((label, scores))
        m.predictions[label] = pred
        print(f"  {label}: {fmt(scores)}", flush=True)
        if label == raw_for:
            raw = translator.translate([read_image(pair_files(name, root)[0])])
            pred = normalised(sitk.GetArrayFromImage(raw.synthetic), pair.nawm)
            scores = t1c_scores(t1n, true_n, pred, pair.brain, deep=m.deep)
            scores["warnings"] = [w.code for w in raw.scan.warnings] if raw.scan else []
            m.rows.append((f"{label}, T1 as stored (the scale the file holds)", scores))
            print(f"  {label} raw: {fmt(scores)}", flush=True)
    return m


def cross_baselines(measured: List[Measured]) -> None:
    """The global linear map fitted on each other pair, scored on this one (held-out)."""
    for m in measured:
        for other in measured:
            if other is m:
                continue
            a, b = fit_linear(other.t1n, other.true_n, other.brain)
            m.rows.insert(1, (f"baseline: global linear, fitted on {other.pair} ({a:.3f} T1 + {b:.3f})",
                              t1c_scores(m.t1n, m.true_n, a * m.t1n + b, m.brain, deep=m.deep)))


def _f(v, p=3) -> str:
    return "–" if v is None else f"{v:.{p}f}"


def fmt(s: Dict[str, Any]) -> str:
    return (f"MAE {_f(s['mae'])} SSIM {_f(s['ssim'])} top1%: E {_f(s['E_true'], 2)}/{_f(s['E_pred'], 2)} captured "
            f"{_f(s['captured'], 2)} mae_E {_f(s['mae_E_top'], 2)} ratio {_f(s['ratio_true'], 2)}/{_f(s['ratio_pred'], 2)}"
            f"; deep: E {_f(s.get('E_true_deep'), 2)}/{_f(s.get('E_pred_deep'), 2)} captured "
            f"{_f(s.get('captured_deep'), 2)}; r_E {_f(s['r_E'])}")


def table(measured: List[Measured]) -> str:
    lines = ["| pair | prediction | MAE brain | SSIM brain | top 1 %: E true / pred | captured | MAE of E | "
             "T1c/T1 true / pred | deep top 1 %: E true / pred | captured | r(E) brain |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in measured:
        for label, s in m.rows:
            lines.append(f"| {m.pair} | {label} | {_f(s['mae'])} | {_f(s['ssim'])} | {_f(s['E_true'], 2)} / "
                         f"{_f(s['E_pred'], 2)} | {_f(s['captured'], 2)} | {_f(s['mae_E_top'], 2)} | "
                         f"{_f(s['ratio_true'], 2)} / {_f(s['ratio_pred'], 2)} | {_f(s.get('E_true_deep'), 2)} / "
                         f"{_f(s.get('E_pred_deep'), 2)} | {_f(s.get('captured_deep'), 2)} | {_f(s['r_E'])} |")
    return "\n".join(lines)


def picture(measured: List[Measured], path: Path, dpi: int, labels: Optional[Sequence[str]] = None) -> None:
    """T1, true T1c, the predictions of ``labels`` (all by default), true and predicted enhancement, one row per
    pair, on the axial slice with most of the deep brain's top voxels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def chosen(m: Measured):
        return [(k, v) for k, v in m.predictions.items() if labels is None or k in labels]

    columns = 2 + 2 * max((len(chosen(m)) for m in measured), default=0) + 1
    figure, axes = plt.subplots(len(measured), columns, figsize=(1.9 * columns, 2.3 * len(measured)), squeeze=False)
    for row, m in zip(axes, measured):
        e_true = enhancement(m.t1n, m.true_n)
        top = top_voxels(e_true, m.deep)
        z = int(np.argmax(top.sum(axis=(1, 2))))  # the slice with most of the deep brain's top voxels
        box = np.argwhere(m.brain[z])
        (y0, x0), (y1, x1) = box.min(0), box.max(0) + 1

        def show(ax, values, title, cmap="gray", lo=0.0, hi=2.5):
            shown = np.where(m.brain[z], values[z], np.nan)[y0:y1, x0:x1]
            ax.imshow(shown[::-1] if m.flip_rows else shown, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.axis("off")

        show(row[0], m.t1n, f"{m.pair}\nT1 (NAWM units)")
        show(row[1], m.true_n, "true T1c")
        panels = chosen(m)
        for k, (label, pred) in enumerate(panels):
            show(row[2 + k], pred, f"predicted T1c\n{label}")
        show(row[2 + len(panels)], e_true, "true enhancement\nT1c - T1", "magma", 0.0, 1.5)
        for k, (label, pred) in enumerate(panels):
            show(row[3 + len(panels) + k], enhancement(m.t1n, pred), f"predicted enhancement\n{label}", "magma", 0.0, 1.5)
        for ax in row[3 + 2 * len(panels):]:
            ax.axis("off")
    save_figure(figure, "Real T1 / T1c pairs: axial slice with most of the deep brain's top-1 % enhancing voxels; "
                "grey 0-2.5, enhancement 0-1.5 NAWM units", path, dpi)


def save_figure(figure, title: str, path: Path, dpi: int) -> None:
    import matplotlib.pyplot as plt

    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


ENHANCING_SHARE = 0.5
HEADS = ("open_ms_patient01_T1W", "open_ms_patient04_T1W", "philips_adni_mprage_1mm", "siemens_xa30_t1w_2mm")


def measure_head(name: str, root: Path, models: Sequence[Tuple[str, Any, Any]], template) -> Dict[str, Any]:
    """A real whole-head T1w (no post-contrast scan to compare with) through each model: the white matter of the
    synthetic T1c over the input's, on the input's NAWM (a healthy white matter barely enhances: about 1; a model
    that reads the scan on the wrong scale is far from it), the volume (mL) it makes enhance by more than
    :data:`ENHANCING_SHARE` of the white matter inside the cerebrum (``real_heads.Template.brain``: the average
    head's grey and white matter, 4 mm inside, above the skull base, registered affinely to the scan; only
    vessels, the choroid plexus and active lesions enhance there), the scan warnings, and the slices for the
    picture. The input's NAWM is the engine's estimator (its 20 mm deep region)."""
    from real_heads import in_template, place

    from MedGANTranslateLib.imageio import read_image
    from MedGANTranslateLib.white_matter import DEFAULT_DEPTH_MM, deep_region, nawm_mask

    image = read_image(root / "t1" / f"{name}.nii.gz")
    t1 = sitk.GetArrayFromImage(image).astype(np.float32)
    out: Dict[str, Any] = {"head": name, "rows": {}, "slices": {}}
    for label, _, translator in models:
        result = translator.translate([image])
        if "placed" not in out:  # the scan's own masks, from the first model's body mask
            body = sitk.GetArrayFromImage(result.body_mask) > 0
            out["nawm"] = nawm_mask(t1, deep_region(body, image.GetSpacing(), DEFAULT_DEPTH_MM))
            out["wm"] = float(np.median(t1[out["nawm"]]))  # the engine's white_matter() value
            out["z"] = int(np.argmax(out["nawm"].sum(axis=(1, 2))))
            out["slices"]["input"] = t1[out["z"]]
            out["placed"] = place(name, image, result.body_mask, template, is_ct=False)
        placed = out["placed"]
        synthetic = sitk.GetArrayFromImage(result.synthetic)
        ratio = float(np.median(synthetic[out["nawm"]]) / np.median(t1[out["nawm"]]))
        added = in_template(sitk.Cast(result.synthetic, sitk.sitkFloat32) - sitk.Cast(image, sitk.sitkFloat32),
                            placed.transform, template)
        brain = template.brain & placed.covered[:, None, None] & placed.head
        enhancing = brain & (added > ENHANCING_SHARE * out["wm"])
        out["rows"][label] = {"white_matter_ratio": round(ratio, 3),
                              "enhancing_ml": round(float(enhancing.sum()) * placed.voxel_ml, 2),
                              "warnings": [w.code for w in result.scan.warnings] if result.scan else []}
        out["slices"][label] = synthetic[out["z"]]
        print(f"{name}: {label}: synthetic/input white matter {ratio:.3f}; enhancing "
              f"{out['rows'][label]['enhancing_ml']} mL; warnings {out['rows'][label]['warnings']}", flush=True)
    return out


def heads_picture(heads: List[Dict[str, Any]], labels: Sequence[str], path: Path, dpi: int) -> None:
    """Per head: the T1w and each model's synthetic T1c on the axial slice with most white matter, all shown
    from 0 to 2.5 times the input's white matter (its own scale), so a model on the wrong scale shows black or white."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 1 + len(labels)
    figure, axes = plt.subplots(len(heads), columns, figsize=(2.4 * columns, 2.5 * len(heads)), squeeze=False)
    for row, head in zip(axes, heads):
        panels = [("T1w (input)", head["slices"]["input"])] + [(label, head["slices"][label]) for label in labels]
        for ax, (title, values) in zip(row, panels):
            ax.imshow(values[::-1], cmap="gray", vmin=0, vmax=2.5 * head["wm"], interpolation="nearest")
            row_ = head["rows"].get(title, {})
            ratio = "" if not row_ else f"\nWM ratio {row_['white_matter_ratio']:.2f}, enhancing {row_['enhancing_ml']:.1f} mL"
            ax.set_title((f"{head['head']}\n" if title.startswith("T1w") else "") + title + ratio, fontsize=7)
            ax.axis("off")
    save_figure(figure, "Synthetic T1c of real whole-head T1w scans (no post-contrast scan of them exists): grey 0 "
                "to 2.5x the input's white matter; WM ratio: synthetic over input white matter (about 1 expected)",
                path, dpi)


CARD_KEYS = ("mae", "ssim", "E_true", "E_pred", "captured", "captured_deep", "r_E")


def _rounded(scores: Dict[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
    return {k: (None if scores.get(k) is None else round(float(scores[k]), 3)) for k in keys}


def pairs_section(measured: List[Measured], label: str) -> Dict[str, Any]:
    """A card's ``validation.real_pairs``: the model's row ``label`` on each real pair with the baselines beside it."""
    pairs = []
    for m in measured:
        rows = dict(m.rows)
        if label not in rows:
            continue
        baselines = {k[len("baseline: "):]: _rounded(v, CARD_KEYS) for k, v in m.rows
                     if k.startswith("baseline: ") and "oracle" not in k}
        pairs.append({"pair": m.pair, **_rounded(rows[label], CARD_KEYS), "baselines": baselines})
    return {"dataset": "Real native / post-contrast T1 pairs (../shared/real-data/t1c: brats_gli_00001, "
                       "open_ms_patient07), brain only, values in units of each image's white matter; metrics as "
                       "defined in benchmarks/t1c_real.py (E: enhancement in the 1 % of the brain enhancing most).",
            "pairs": pairs}


def heads_section(heads: List[Dict[str, Any]], label: str) -> Dict[str, Any]:
    """A card's ``validation.real_heads_enhancement``: the model's numbers on each real whole-head T1w (no T1c of
    them exists)."""
    return {"dataset": "Real whole-head T1w scans without a post-contrast scan (../shared/real-data/t1); "
                       "white_matter_ratio: synthetic over input white matter (about 1 expected); enhancing_ml: "
                       f"cerebrum brightened by more than {ENHANCING_SHARE:g} of the white matter (benchmarks/t1c_real.py --heads).",
            "scans": [{"scan": h["head"], **h["rows"][label]} for h in heads]}


def main(argv=None) -> int:
    from real_heads import Template, write_card_section

    from MedGANTranslateLib.pipeline import Translator
    from MedGANTranslateLib.registry import resolve_model
    from MedGANTranslateLib.run_options import RunOptions
    from MedGANTranslateLib.training.real_pairs import PAIRS

    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-data", type=Path, default=here.parent / "shared" / "real-data")
    parser.add_argument("--out", type=Path, default=here / "benchmarks" / "out" / "t1c_real")
    parser.add_argument("--models", nargs="+", default=[MODEL],
                        help="model ids or LABEL=FOLDER; the first also runs on the T1 as stored")
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS))
    parser.add_argument("--picture", default=str(here / "docs" / "images" / "t1c_real.png"),
                        help="the overview picture ('' for none)")
    parser.add_argument("--picture-pairs", nargs="*", default=["open_ms_patient07"])
    parser.add_argument("--picture-dpi", type=int, default=90)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-trained-windows", dest="trained_windows", action="store_false",
                        help="skip the second run of each model on 64^3 windows (--roi 64 64 64)")
    parser.add_argument("--heads", nargs="*", default=None, metavar="NAME",
                        help="instead of the pairs, run each model on these real whole-head T1w scans under t1/ "
                             f"(no names: {', '.join(HEADS)}) and draw --heads-picture")
    parser.add_argument("--heads-picture", type=Path, default=None,
                        help="the heads' picture (default: heads.png in --out)")
    parser.add_argument("--write-card", action="store_true",
                        help="write the first model's numbers into its bundled card (validation.real_pairs, or "
                             "validation.real_heads_enhancement with --heads)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    models = []
    for spec in args.models:
        label, _, where = spec.rpartition("=")
        card = resolve_model(where)
        label = label or f"{card.id} v{card.version}"
        models.append((label, card, Translator(card, RunOptions(device="cpu", threads=args.threads))))
        if args.trained_windows and args.heads is None:
            models.append((f"{label}, {WINDOW_LABEL}", card,
                           Translator(card, RunOptions(device="cpu", threads=args.threads, roi=list(TRAINED_WINDOW)))))
    if args.heads is not None:
        template = Template.load(args.real_data / "templates")
        heads = [measure_head(name, args.real_data, models, template) for name in (args.heads or HEADS)]
        (args.out / "heads.json").write_text(json.dumps([{"head": h["head"], "white_matter": h["wm"], **h["rows"]}
                                                         for h in heads], indent=2), encoding="utf-8")
        heads_picture(heads, [label for label, _, _ in models], args.heads_picture or args.out / "heads.png",
                      args.picture_dpi)
        if args.write_card:
            section = heads_section(heads, models[0][0])
            print(f"wrote {write_card_section(models[0][1], 'real_heads_enhancement', section, MODELS_FOLDER)}")
        print(f"heads: results and picture in {args.out}")
        return 0

    measured = [measure_pair(name, args.real_data, models, models[0][0]) for name in args.pairs]
    if len(measured) > 1:
        cross_baselines(measured)
    print()
    print(table(measured))
    results = {m.pair: {"alignment": m.alignment, "rows": [{"prediction": label, **s} for label, s in m.rows],
                        "top_by_depth": top_by_depth(m.t1n, m.true_n, m.predictions, m.brain)} for m in measured}
    for pair, result in results.items():
        print(f"\n{pair}: where the top {TOP_SHARE:.0%} lies (mm inside the brain mask: share, T1, mean E true / predicted)")
        for row in result["top_by_depth"]:
            low, high = row["band_mm"]
            predicted = ", ".join(f"{label} {e:.2f}" for label, e in row["e_pred"].items())
            print(f"  {low:g}-{'' if high is None else f'{high:g}'} mm: {row['share']:.0%}, T1 {row['t1']:.2f}, "
                  f"E {row['e_true']:.2f} / {predicted}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.write_card:
        section = pairs_section(measured, models[0][0])
        print(f"wrote {write_card_section(models[0][1], 'real_pairs', section, MODELS_FOLDER)}")
    for m in measured:
        picture([m], args.out / f"{m.pair}.png", 80)
    shown = [m for m in measured if m.pair in args.picture_pairs]
    args.picture = Path(args.picture) if args.picture else None
    if shown and args.picture and str(args.picture):
        picture(shown, args.picture, args.picture_dpi, [label for label, _, _ in models if not label.endswith(WINDOW_LABEL)])
        print(f"\noverview {args.picture} ({args.picture.stat().st_size // 1024} KB)")
    print(f"results and per-pair pictures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
