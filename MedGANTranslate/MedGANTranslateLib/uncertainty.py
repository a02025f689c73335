"""Uncertainty without a reference: the per-voxel spread of the model's output over test-time variants.

Each variant is one whole inference step (the engine's own sliding windows and stitching, :func:`.inference.
run_inference`) on the same prepared volume: the scan as it is; its mirror image along each combination of the
anatomical axes the card declares (``inference.test_time_mirror``), mirrored back; the window grid moved by a
fraction of the window (:attr:`.inference_settings.InferenceSettings.grid_shift`; for a fully convolutional network by a
fraction of its size multiple, the only shift that changes its output); with a fresh Monte-Carlo dropout draw in
every variant when the network has dropout layers; and all of these for every member of an ensemble the card
lists (``ensemble``: weights files of the same architecture, or other models that take the same inputs prepared
the same way). The synthetic image is the mean of the variants and the uncertainty map their standard deviation
(over the variants, ddof 0) per voxel, accumulated one variant at a time (Welford) so memory does not grow with
their number, and scaled to output units by the card's linear output mapping (before clipping). Here are the
plan (:func:`plan_variants`, pure Python, which the Slicer panel also uses through :func:`card_variation`), its
wording for the provenance (:func:`describe`) and the run (:class:`UncertaintyEstimator`).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import CardError, MedGANError

if TYPE_CHECKING:  # the plan is pure Python: the Slicer panel reads cards before numpy and torch are installed
    import numpy as np

#: Window-grid shifts (or Monte-Carlo dropout draws where shifts change nothing) in the default plan, after the
#: scan as it is and its mirror images: the default model gets 4 variants (as is, mirror left-right, 2 shifts).
DEFAULT_SHIFTS = 2


@dataclass(frozen=True)
class Variant:
    """One pass of the network: ensemble ``member`` (0: the card's own weights), anatomical ``mirror`` axes,
    window-grid ``shift`` (voxels, z, y, x) and, for a network with dropout, the seed of its ``draw``."""

    member: int = 0
    mirror: Tuple[str, ...] = ()
    shift: Tuple[int, int, int] = (0, 0, 0)
    draw: int = 0

    def label(self) -> str:
        if self.mirror:
            return "mirror " + " and ".join(self.mirror)
        if any(self.shift):
            return f"window grid moved {_voxels(self.shift)} voxels"
        return "as is"


def _voxels(shift: Sequence[int]) -> str:
    return str(shift[0]) if len(set(shift)) == 1 else "(" + ", ".join(str(v) for v in shift) + ")"


def mirror_combinations(axes: Sequence[str]) -> List[Tuple[str, ...]]:
    """Every non-empty combination of the mirror ``axes``, fewest first: ('left-right',) for the bundled models."""
    return [combo for n in range(1, len(axes) + 1) for combo in itertools.combinations(axes, n)]


def shift_base(roi_size: Sequence[int], divisor: int, fully_convolutional: bool) -> Tuple[int, int, int]:
    """What a window-grid shift is a fraction of, per array axis (z, y, x): the window (``roi_size`` in array
    order; a 2D network's two in-plane sides: the smaller for every axis), or for a fully convolutional network
    its size multiple, since moving its large windows by a whole multiple changes nothing but where their edges
    fall in the background."""
    if fully_convolutional:
        return (divisor,) * 3
    sides = tuple(int(v) for v in roi_size)
    return sides if len(sides) == 3 else (min(sides),) * 3  # type: ignore[return-value]


def grid_shifts(count: int, base: Sequence[int]) -> List[Tuple[int, int, int]]:
    """Up to ``count`` different non-zero shifts, k / (count + 1) of ``base`` along every axis (k = 1..count);
    fewer when ``base`` is too small to give that many different ones."""
    shifts: List[Tuple[int, int, int]] = []
    for k in range(1, count + 1):
        shift = tuple(int(round(k * b / (count + 1))) % max(1, b) for b in base)
        if any(shift) and shift not in shifts:
            shifts.append(shift)  # type: ignore[arg-type]
    return shifts


def max_shifts(base: Sequence[int]) -> int:
    """How many different non-zero shifts a ``base`` allows (a size multiple of 1: none)."""
    return max(0, max(int(b) for b in base) - 1)


def plan_variants(count: Optional[int], mirror_axes: Sequence[str], base: Sequence[int], dropout: bool,
                  members: int = 1, model: str = "this model") -> List[Variant]:
    """The variants of an uncertainty map, ``count`` per ensemble member (None: the default, as is + each mirror
    combination + :data:`DEFAULT_SHIFTS` shifts): the scan as is, then the mirror combinations, then window-grid
    shifts of ``base`` (:func:`shift_base`), and, for a network with ``dropout`` where shifts run out, more
    draws as is. Refuses, naming what is missing, a plan with fewer than two variants or more than the model
    has different ones."""
    mirrors = mirror_combinations(mirror_axes)
    room = max_shifts(base)
    if count is None:
        count = 1 + len(mirrors) + (DEFAULT_SHIFTS if room or dropout else 0)
    if count < 1:
        raise MedGANError(f"The number of uncertainty variants must be at least 1, got {count}.")
    if count * members < 2:
        nothing = not mirrors and not room and not dropout
        if nothing:
            raise MedGANError(nothing_to_vary(model))
        raise MedGANError(
            f"An uncertainty map compares at least 2 variants, and {count} variant of {model} was asked for "
            "(it lists no ensemble members). Give --uncertainty-variants 2 or more, or leave it out for the "
            f"default ({1 + len(mirrors) + (DEFAULT_SHIFTS if room or dropout else 0)})."
        )
    geometry: List[Tuple[Tuple[str, ...], Tuple[int, int, int]]] = [((), (0, 0, 0))] + [(m, (0, 0, 0)) for m in mirrors]
    geometry = geometry[:count]
    wanted = count - len(geometry)
    shifts = grid_shifts(wanted, base) if wanted else []
    if len(shifts) < wanted and wanted <= room:  # rounding gave repeats: take every shift in order instead
        shifts = grid_shifts(room, base)[:wanted]
    geometry += [((), s) for s in shifts]
    if len(geometry) < count:
        if not dropout:
            most = 1 + len(mirrors) + room
            raise MedGANError(
                f"{model} has {most} different variant(s) for an uncertainty map ({_parts(mirrors, room)}) and "
                f"{count} were asked for; give --uncertainty-variants {most} or fewer."
                + ("" if most > 1 else " " + nothing_to_vary(model))
            )
        geometry += [((), (0, 0, 0))] * (count - len(geometry))  # further dropout draws of the scan as is
    return [Variant(member, mirror, shift, draw=index) for member in range(members)
            for index, (mirror, shift) in enumerate(geometry)]


def _parts(mirrors: Sequence[Tuple[str, ...]], room: int) -> str:
    parts = ["the scan as is"]
    if mirrors:
        parts.append(f"{len(mirrors)} mirror image(s)")
    parts.append(f"{room} window-grid shift(s)" if room else "no window-grid shift that changes its output")
    return ", ".join(parts)


def nothing_to_vary(model: str) -> str:
    """Why a model gets no uncertainty map."""
    return (f"{model} has nothing to vary for an uncertainty map: its card declares no test-time mirror axes "
            "(inference.test_time_mirror) and no ensemble members (ensemble), its network has no dropout layers, "
            "and it is fully convolutional without downsampling (size multiple 1), so moving its windows changes "
            "nothing. Run it without --uncertainty.")


def describe(variants: Sequence[Variant], dropout: bool = False, member_labels: Sequence[str] = ()) -> str:
    """The provenance's words for the variants: 'std over 4 variants: as is, mirror left-right, 2 window-grid
    shifts (5 and 11 voxels)'; ensemble members and dropout draws are named when there are any."""
    members = sorted({v.member for v in variants})
    own = [v for v in variants if v.member == members[0]]
    plain = sum(1 for v in own if not v.mirror and not any(v.shift))
    parts = ["as is" + (f" ({plain} draws)" if plain > 1 else "")] if plain else []
    parts += [v.label() for v in own if v.mirror]
    shifted = [v.shift for v in own if any(v.shift)]
    if shifted:
        amounts = [_voxels(s) for s in shifted]
        listed = amounts[0] if len(amounts) == 1 else ", ".join(amounts[:-1]) + " and " + amounts[-1]
        parts.append(f"{len(shifted)} window-grid shift{'s' if len(shifted) > 1 else ''} ({listed} voxels)")
    text = ", ".join(parts)
    if len(members) > 1:
        names = ", ".join(member_labels) if member_labels else ""
        text = f"{len(members)} ensemble members{f' ({names})' if names else ''} × ({text})"
    if dropout:
        text += ", each with a new Monte-Carlo dropout draw"
    return f"std over {len(variants)} variants: {text}"


# ------------------------------------------------------------------------------------ from a card's data


def _card_has_dropout(data: Mapping[str, Any]) -> bool:
    """Whether a card's network has dropout layers, as far as its card shows (builtin networks' use_dropout,
    architecture.forward.dropout); the engine looks at the loaded network itself."""
    arch = data.get("architecture") or {}
    params = arch.get("params") or {}
    return bool(params.get("use_dropout") or params.get("dropout") or (arch.get("forward") or {}).get("dropout"))


def card_variation(data: Mapping[str, Any]) -> Tuple[int, str]:
    """(passes of the network, their description) of a card's default uncertainty map, from the card's data
    alone (no third-party package: the Slicer panel reads cards before the engine is installed); (0, why) when
    the model has nothing to vary."""
    try:
        inference = data.get("inference") or {}
        arch = data.get("architecture") or {}
        divisor = max(int(inference.get("divisible_by", 1)), _builtin_divisor(arch))
        roi = list(reversed([int(v) for v in inference["roi_size"]]))
        base = shift_base(roi, divisor, bool(inference.get("fully_convolutional", False)))
        dropout = _card_has_dropout(data)
        members = 1 + len(data.get("ensemble") or [])
        variants = plan_variants(None, tuple(inference.get("test_time_mirror", ())), base, dropout, members,
                                 f"Model '{data.get('id', '?')}'")
    except MedGANError as exc:
        return 0, str(exc)
    except (KeyError, TypeError, ValueError) as exc:
        return 0, f"The model card cannot be read for an uncertainty map ({exc})."
    return len(variants), describe(variants, dropout)


def _builtin_divisor(architecture: Mapping[str, Any]) -> int:
    """The size multiple a builtin network needs, read from its parameters without importing torch (the same
    numbers as :func:`.networks.required_divisor`)."""
    params = architecture.get("params") or {}
    name = architecture.get("name")
    if architecture.get("type") != "builtin":
        return 1  # the card's divisible_by says it
    if name == "unet_generator":
        return 2 ** int(params.get("num_downs", 0))
    if name == "resnet_generator":
        return 4
    if name == "vnet_generator":
        return 2 ** len(params.get("down_blocks", (1, 2, 3, 2)))
    return 1


# ------------------------------------------------------------------------------------------ running


@dataclass
class Member:
    """One ensemble member: ``label`` (its weights file or model id), its ``network`` (None: the translator's
    own, read when the variants run) and window ``settings``."""

    label: str
    network: Any
    settings: Any


@dataclass
class UncertaintyRun:
    """The variants' ``mean`` and standard deviation ``std`` (z, y, x, network units), the inference ``report``
    (windows of all variants together), ``description`` for the provenance, the ``variants`` and each one's
    inference ``seconds``."""

    mean: np.ndarray
    std: np.ndarray
    report: Any
    description: str
    variants: List[Variant]
    seconds: List[float] = field(default_factory=list)


class RunningMoments:
    """Mean and variance over arrays added one at a time (Welford's update, in place, float32)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Optional[np.ndarray] = None
        self._m2: Optional[np.ndarray] = None

    def add(self, values: np.ndarray) -> None:
        """Adds ``values`` (float32; consumed: it is overwritten)."""
        import numpy as np

        self.count += 1
        if self.mean is None:
            self.mean = values
            self._m2 = np.zeros_like(values)
            return
        delta = values - self.mean
        self.mean += delta / self.count
        values -= self.mean
        delta *= values
        self._m2 += delta

    def std(self) -> np.ndarray:
        import numpy as np

        assert self._m2 is not None, "no values added"
        out = self._m2
        out /= self.count
        np.maximum(out, 0.0, out=out)
        return np.sqrt(out, out=out)


def has_dropout(network: Any) -> bool:
    """Whether ``network`` (a loaded torch module) holds dropout layers with a non-zero rate."""
    from torch import nn

    if not isinstance(network, nn.Module):
        return False
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in network.modules())


def dropout_active(network: Any) -> Any:
    """``network`` with its dropout layers kept active in eval mode (a copy; the same network when they already
    are, :class:`.forward_mode.ActiveDropout`), for Monte-Carlo dropout."""
    import copy

    from torch import nn

    from .fastconv import replace_layers
    from .forward_mode import ActiveDropout

    inactive = [m for m in network.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and not m.training]
    if not inactive:
        return network
    network = copy.deepcopy(network)
    replace_layers(network, lambda m: isinstance(m, nn.modules.dropout._DropoutNd), ActiveDropout)
    return network.eval()


class _VariantProgress:
    """One ``infer`` stage over all variants for the progress callback: variant i's windows count after those
    of the variants before it (scaled to the first variant's window count), with the ETA over the whole."""

    def __init__(self, callback: Optional[Callable], variants: int) -> None:
        self.callback = callback
        self.variants = variants
        self.index = 0
        self.label = ""
        self.unit: Optional[int] = None
        self.start = time.perf_counter()

    def __call__(self, event) -> None:
        from .progress import ProgressEvent

        if self.callback is None or event.stage != "infer" or event.total <= 0:
            if self.callback is not None:
                self.callback(event)
            return
        if self.unit is None:
            self.unit = event.total
        total = self.unit * self.variants
        done = min(total, int(round(self.index * self.unit + self.unit * event.done / event.total)))
        message = ""
        if event.message:  # a variant's first event, '146 windows on cpu': the windows of all variants instead
            words = event.message.split(" ", 2)
            detail = words[2] if len(words) == 3 and words[1] == "windows" else event.message
            message = f"{total} windows {detail}: variant {self.index + 1} of {self.variants} ({self.label})"
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (total - done) if 0 < done < total else (0.0 if done >= total else None)
        self.callback(ProgressEvent("infer", done, total, message, eta, elapsed))


RunNetwork = Callable[..., Tuple[Any, Any]]  # (output array, InferenceReport)


class UncertaintyEstimator:
    """The variants of one model for a :class:`~.pipeline.Translator`: ``members`` (the first is the card's own,
    whose network is the translator's), the plan of ``count`` variants per member (None: the default)."""

    def __init__(self, card: Any, members: Sequence[Member], count: Optional[int], dropout: bool) -> None:
        self.card = card
        self.members = list(members)
        self.dropout = dropout
        settings = self.members[0].settings
        self.base = shift_base(settings.roi_size, settings.divisor, settings.fully_convolutional)
        self.variants = plan_variants(count, settings.test_time_mirror, self.base, dropout, len(self.members),
                                      f"Model '{card.id}'")
        labels = [m.label for m in self.members] if len(self.members) > 1 else []
        self.description = describe(self.variants, dropout, labels)
        self._active: Dict[int, Any] = {}

    def _network(self, member: Member, own: Any) -> Any:
        network = own if member.network is None else member.network
        if not self.dropout:
            return network
        key = id(network)
        if key not in self._active:
            self._active[key] = (network, dropout_active(network))
        return self._active[key][1]

    def run(self, run_network: RunNetwork, own_network: Any, volume: np.ndarray, mask: np.ndarray,
            direction: Sequence[float], device: Any, progress=None, cancel=None,
            slice_axes: Optional[Sequence[int]] = None) -> UncertaintyRun:
        """Every variant through ``run_network(network, settings, volume, mask, progress, cancel, slice_axes)``
        (the translator's inference step), ``own_network`` standing for the card's own member; the volume
        (channels, z, y, x) and body ``mask`` are those on the network grid, ``direction`` its direction (where
        the anatomical mirror axes lie)."""
        import numpy as np
        import torch

        from .anatomical_axes import mirror_dims
        from .sliding_window import InferenceReport

        moments = RunningMoments()
        tracker = _VariantProgress(progress, len(self.variants))
        seconds: List[float] = []
        reports = []
        for index, variant in enumerate(self.variants):
            member = self.members[variant.member]
            settings = replace(member.settings, grid_shift=variant.shift if any(variant.shift) else ())
            dims = mirror_dims(direction, variant.mirror) if variant.mirror else ()
            flip = tuple(d + 1 for d in dims)
            source = np.ascontiguousarray(np.flip(volume, flip)) if dims else volume
            body = np.ascontiguousarray(np.flip(mask, dims)) if dims else mask
            tracker.index, tracker.label = index, variant.label()
            started = time.perf_counter()
            cuda = [device.index or 0] if getattr(device, "type", "cpu") == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(variant.draw)
                out, report = run_network(self._network(member, own_network), settings, source, body,
                                          tracker if progress is not None else None, cancel, slice_axes)
            seconds.append(time.perf_counter() - started)
            del source, body
            if dims:
                out = np.ascontiguousarray(np.flip(out, dims))
            moments.add(out.astype(np.float32, copy=False))
            reports.append(report)
        first = reports[0]
        report = InferenceReport(first.device, sum(r.windows_total for r in reports),
                                 sum(r.windows_computed for r in reports), sum(r.windows_skipped for r in reports),
                                 next((r.fallback for r in reports if r.fallback), None), first.precision,
                                 first.roi_size, (), first.planes)
        assert moments.mean is not None
        mean = moments.mean
        return UncertaintyRun(mean, moments.std(), report, self.description, list(self.variants), seconds)


# ------------------------------------------------------------------------------------------- ensembles


def _compatible(card: Any, other: Any) -> List[str]:
    """What differs between two cards where ensemble members must agree (empty when nothing does)."""
    problems = []
    mine = [(s.modality, s.sequence) for s in card.inputs]
    theirs = [(s.modality, s.sequence) for s in other.inputs]
    if mine != theirs:
        problems.append(f"inputs {theirs} instead of {mine}")
    if other.preprocessing != card.preprocessing:
        problems.append("preprocessing (orientation, spacing, N4, normalisation) differs")
    body = (card.postprocessing.get("body_mask"), other.postprocessing.get("body_mask"))
    if body[0] != body[1]:
        problems.append("postprocessing.body_mask differs")
    if other.postprocessing["output_mapping"] != card.postprocessing["output_mapping"]:
        problems.append(f"output_mapping {other.postprocessing['output_mapping']} instead of "
                        f"{card.postprocessing['output_mapping']}")
    for key in ("modality", "unit"):
        if other.output[key] != card.output[key]:
            problems.append(f"output {key} {other.output[key]} instead of {card.output[key]}")
    return problems


def member_cards(card: Any, models_dirs: Sequence[str] = ()) -> List[Tuple[str, Any]]:
    """(label, card) of each further ensemble member the card lists: a weights file becomes a copy of the card
    with that file's weights (same architecture), a model id that model's own card, which must take the same
    inputs prepared the same way and give the same output scale. Refuses, naming the member, one that cannot
    be averaged with the card's own output."""
    from .card import ModelCard
    from .registry import resolve_model

    out: List[Tuple[str, Any]] = []
    for index, entry in enumerate(card.data.get("ensemble") or []):
        where = f"Model '{card.id}' v{card.version}: ensemble member {index + 1}"
        if "model" in entry:
            try:
                other = resolve_model(entry["model"], models_dirs)
            except MedGANError as exc:
                raise CardError(f"{where} ('{entry['model']}') cannot be found: {exc}") from exc
            if other.id == card.id and other.version == card.version:
                raise CardError(f"{where} is the model itself ('{entry['model']}'); list other weights or models.")
            problems = _compatible(card, other)
            if problems:
                raise CardError(
                    f"{where} ('{other.id}' v{other.version}) cannot be averaged with it: {'; '.join(problems)}. "
                    "Ensemble members must take the same inputs, prepared the same way, and give the same output "
                    "scale."
                )
            out.append((f"{other.id} v{other.version}", other))
            continue
        inherited = {k: v for k, v in card.weights.items() if k in ("format", "key")}  # not the size or URL
        weights = dict(inherited, **{k: v for k, v in entry.items() if k != "model"})
        data = dict(card.data, weights=weights)
        out.append((str(entry["file"]), ModelCard(data=data, path=card.path)))
    return out
