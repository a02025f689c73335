"""Pictures of the synthetic training data (``data.source: template_synth``): what the network is trained on.

    .venv/bin/python benchmarks/synth_samples.py [--config models/mr-t1-to-ct-pix2pix/train_synth.yaml]
        [--cache-dir /tmp/synth_cache] [--out docs/images]

writes ``synth_training_samples.png`` (the first realisations of the recipe's run: the normalised T1w input the
network sees and its CT target, axial through the eyes and coronal through the skull base, on the 1 mm network
grid) and ``synth_vs_real_t1.png`` (synthetic inputs beside the real T1w scans of ``shared/real-data/t1``, each
prepared by the engine's own network_inputs, so both are what the network sees). With ``--measure``, it also
measures the training targets with the real-heads yardstick (``benchmarks/real_heads.py``): the CTs of the first
template heads and phantoms of the recipe, registered to the template CT like the real GE head CT, beside that real
CT: how real the anatomy the network learns is, before any network is involved.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MedGANTranslate"))

from MedGANTranslateLib.imageio import read_image  # noqa: E402
from MedGANTranslateLib.training.config import load_config  # noqa: E402
from MedGANTranslateLib.training.data import card_network_inputs  # noqa: E402
from MedGANTranslateLib.training.loop import card_template  # noqa: E402
from MedGANTranslateLib.training.synth import realise  # noqa: E402

REAL_T1 = ("philips_adni_mprage_1mm.nii.gz", "siemens_xa30_t1w_2mm.nii.gz", "open_ms_patient01_T1W.nii.gz",
           "open_ms_patient04_T1W.nii.gz")


def save(fig, path: Path) -> None:
    """The figure as a PNG of 128 colours (grey images lose nothing visible; the file is half the size)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72, facecolor="black")
    buffer.seek(0)
    Image.open(buffer).convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=128).save(path, optimize=True)


def sample(index: int, cfg: dict, card: dict, cache: str):
    """Realisation ``index`` as the network sees it: input (z, y, x), target in HU, labels, on the network grid."""
    r = realise(index, int(cfg["seed"]), cfg["data"], cache)
    volume, mask, grid = card_network_inputs([r.mr], card)
    reference = grid.image(mask.astype(np.uint8))
    ct = sitk.GetArrayFromImage(sitk.Resample(r.ct, reference, sitk.Transform(), sitk.sitkLinear, -1000.0,
                                              sitk.sitkFloat32))
    ct[~mask] = -1000.0
    labels = sitk.GetArrayFromImage(sitk.Resample(r.labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                  sitk.sitkUInt8))
    return volume[0], ct, labels, mask, r


def planes(labels: np.ndarray, mask: np.ndarray):
    """Axial index through the eyes (or the middle of the body) and coronal index 35 mm behind them."""
    eyes = np.nonzero(labels == 8)
    body = np.nonzero(mask)
    if eyes[0].size:
        z, y = int(eyes[0].mean()), int(eyes[1].mean()) + 35
    else:
        z, y = int(np.median(body[0])), int(np.median(body[1]))
    return z, min(y, mask.shape[1] - 1)


def crop_square(image: np.ndarray, mask: np.ndarray, size: int = 200) -> np.ndarray:
    """The body's box in a ``size`` square (padded with the background), so panels line up."""
    ys, xs = np.nonzero(mask)
    if not ys.size:
        ys, xs = np.array([image.shape[0] // 2]), np.array([image.shape[1] // 2])
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    out = np.full((size, size), image.min(), image.dtype)
    y0, x0 = cy - size // 2, cx - size // 2
    sy = slice(max(y0, 0), min(y0 + size, image.shape[0]))
    sx = slice(max(x0, 0), min(x0 + size, image.shape[1]))
    out[sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0] = image[sy, sx]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "models" / "mr-t1-to-ct-pix2pix" / "train_stage1.yaml"))
    parser.add_argument("--cache-dir", default="/tmp/synth_cache")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--real-data", default=str(ROOT.parent / "shared" / "real-data"))
    parser.add_argument("--measure", type=int, default=0, metavar="N",
                        help="measure the CTs of the first N template heads and N/2 phantoms with real_heads.py")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = load_config(args.config)
    card = card_template(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = [sample(i, cfg, card, args.cache_dir) for i in range(args.count)]

    rows = ("T1w input, axial", "CT target, axial", "T1w input, coronal", "CT target, coronal")
    fig, axes = plt.subplots(4, args.count, figsize=(1.75 * args.count, 7.4), facecolor="black")
    for col, (mr, ct, labels, mask, r) in enumerate(samples):
        z, y = planes(labels, mask)
        panels = (crop_square(mr[z], mask[z]), crop_square(ct[z], mask[z]),
                  crop_square(mr[:, y], mask[:, y]), crop_square(ct[:, y], mask[:, y]))
        for row, panel in enumerate(panels):
            ax = axes[row, col]
            ct_panel = row % 2 == 1
            ax.imshow(panel, cmap="gray", origin="lower" if row >= 2 else "upper",
                      vmin=-1000 if ct_panel else -1.0, vmax=1600 if ct_panel else 1.0, interpolation="bilinear")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(rows[row], color="white", fontsize=7)
        acq = r.acquisition
        title = (f"{acq.description.split(' mm')[0]} mm\nGM/WM {acq.means[5]:.2f}, fat {acq.means[1]:.2f}"
                 f"{', defaced' if acq.deface else ''}") if acq else r.description
        axes[0, col].set_title(f"{r.anatomy}\n{title}", color="white", fontsize=6)
    fig.suptitle("Synthetic training pairs (template_synth): domain-randomised T1w from label maps, and the CT of the "
                 "same labels; network grid, 1 mm, input normalised as at inference; CT window -1000..1600 HU",
                 color="white", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.95), pad=0.3)
    save(fig, out / "synth_training_samples.png")
    plt.close(fig)

    real_dir = Path(args.real_data) / "t1"
    reals = []
    for name in REAL_T1:
        path = real_dir / name
        if path.is_file():
            volume, mask, _ = card_network_inputs([read_image(path)], card)
            reals.append((name.replace(".nii.gz", ""), volume[0], mask))
    if reals:
        n = min(len(reals), 4)
        fig, axes = plt.subplots(2, 2 * n, figsize=(1.9 * 2 * n, 4.2), facecolor="black")
        for col in range(n):
            for offset, (title, mr, mask) in enumerate((reals[col], ("synthetic " + samples[col][4].anatomy,
                                                                     samples[col][0], samples[col][3]))):
                c = 2 * col + offset
                zs = np.flatnonzero(mask.any(axis=(1, 2)))
                z = int(zs.min() + 0.55 * (zs.max() - zs.min()))
                x = mask.shape[2] // 2
                axes[0, c].imshow(crop_square(mr[z], mask[z]), cmap="gray", vmin=-1, vmax=1)
                axes[1, c].imshow(crop_square(mr[:, :, x], mask[:, :, x]), cmap="gray", vmin=-1, vmax=1,
                                  origin="lower")
                axes[0, c].set_title(title, color="white", fontsize=6)
                for ax in axes[:, c]:
                    ax.set_xticks([])
                    ax.set_yticks([])
        fig.suptitle("Real T1w scans (left of each pair) and synthetic training inputs (right), both as the network "
                     "sees them (engine's network_inputs: 1 mm, LPS, body-percentile normalisation to [-1, 1])",
                     color="white", fontsize=7)
        fig.tight_layout(rect=(0, 0, 1, 0.93), pad=0.3)
        save(fig, out / "synth_vs_real_t1.png")
        plt.close(fig)
    for r in samples:
        print(f"{r[4].index}: {r[4].anatomy}: {r[4].description}")
    if args.measure:
        measure_targets(cfg, card, args.cache_dir, Path(args.real_data), args.measure)
    return 0


SKULL_BASE_Z = (-45.0, -15.0)  #: template heights (MNI mm) of the band through skull base, sphenoid and mastoids


def skull_base(ct: np.ndarray, placed, template, reference) -> str:
    """Bone (> 300 HU) and air (< -500 HU) shares of the head in the skull-base band, their overlap (Dice) with the
    real CT's bone and air there once both are registered to the template, and the W1 distance of the band's HU
    histogram from the real CT's: the yardstick's own measures look at the vault and at whole histograms, this band
    is where the phantom is simplest, and the Dice sees where bone and air lie, not only how much there is."""
    import real_heads

    rows = template.rows(SKULL_BASE_Z) & placed.covered & reference.covered
    head = placed.head & rows[:, None, None]
    both = head & reference.head
    values = ct[head]
    w1 = real_heads.wasserstein_hu(values, reference.ct[reference.head & rows[:, None, None]])

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return 2.0 * np.sum(a & b) / max(1, np.sum(a) + np.sum(b))

    bone = dice((ct > 300) & both, (reference.ct > 300) & both)
    air = dice((ct < -500) & both, (reference.ct < -500) & both)
    return f"{100 * np.mean(values > 300):.1f} | {100 * np.mean(values < -500):.1f} | {bone:.2f} | {air:.2f} | {w1:.0f}"


def measure_targets(cfg: dict, card: dict, cache: str, real_data: Path, count: int) -> None:
    """The real-heads yardstick on training CTs: template heads and phantoms of the recipe, and the real CT, plus
    the skull-base band (:func:`skull_base`)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_heads
    from MedGANTranslateLib.training.synth import load_anatomy

    template = real_heads.Template.load(real_data / "templates")
    spec = card["postprocessing"].get("body_mask", {})
    reference = real_heads.reference_ct(real_data, template, real_heads.default_card())
    rows = [real_heads.Row("real head CT", "the real CT (reference)",
                           real_heads.measure(reference.ct, reference, template, reference))]
    bands = ["real head CT | " + skull_base(reference.ct, reference, template, reference)]
    data = cfg["data"]
    anatomies = [("template", s) for s in data["train_seeds"][:count]]
    anatomies += [("phantom", s) for s in data["synth"]["phantom_seeds"][:max(1, count // 2)]]
    for kind, seed in anatomies:
        ct = load_anatomy(kind, seed, data, cache)["ct"]
        ct = sitk.Cast(ct, sitk.sitkFloat32)
        placed = real_heads.place(f"{kind} {seed}", ct, real_heads.ct_head_mask(ct, spec), template, is_ct=True)
        rows.append(real_heads.Row(f"{kind} head {seed}", "its training CT",
                                   real_heads.measure(placed.ct, placed, template, reference)))
        bands.append(f"{kind} head {seed} | " + skull_base(placed.ct, placed, template, reference))
        print(real_heads.format_table(rows[-1:]).splitlines()[-1], "|", bands[-1], flush=True)
    print()
    print(real_heads.format_table(rows))
    print(f"\nSkull-base band (template z {SKULL_BASE_Z[0]:g}..{SKULL_BASE_Z[1]:g} mm):\n")
    print("| head | bone % | air % | bone Dice with the real CT | air Dice | W1 HU |\n| --- | --- | --- | --- | --- | --- |")
    print("\n".join(f"| {line} |" for line in bands))


if __name__ == "__main__":
    raise SystemExit(main())
