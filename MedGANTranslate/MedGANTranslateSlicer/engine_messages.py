"""Reads the engine's ``--progress json`` lines and turns them into what the panel shows.

The engine writes one JSON object per line (``progress``, ``log``, ``warning``, ``done``, ``error``); anything
else on its stdout or stderr (Python warnings, tracebacks) is kept as plain text for the full log.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

# Share of the whole run each engine stage gets on the progress bar; inference dominates.
STAGE_WEIGHTS = (
    ("load", 0.08),
    ("read", 0.04),
    ("preprocess", 0.10),
    ("infer", 0.66),
    ("postprocess", 0.06),
    ("metrics", 0.02),
    ("write", 0.04),
)

STAGE_TITLES = {
    "load": "Loading model",
    "read": "Reading input",
    "preprocess": "Preparing input",
    "infer": "Translating",
    "postprocess": "Finishing",
    "metrics": "Computing metrics",
    "write": "Writing result",
}


@dataclass
class EngineMessage:
    """One line from the engine. ``kind`` is progress, log, done, error, or text for a non-JSON line."""

    kind: str
    data: Dict[str, Any] = field(default_factory=dict)
    raw: str = ""


def parse_line(line: str) -> EngineMessage:
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("event"), str):
            return EngineMessage(data["event"], data, text)
    return EngineMessage("text", {}, text)


def warning_text(data: Dict[str, Any]) -> str:
    """A scan check's ``warning`` event in words: what was found, then what to do."""
    return " ".join(str(data.get(key, "")).strip() for key in ("message", "advice") if data.get(key))


def warnings_html(warnings: List[Dict[str, Any]]) -> str:
    """The panel's warning box: the checks' warnings, one item each. They are about the scan (outside what the
    model was trained on) or about the reference (no metrics against it), so the heading names neither."""
    items = "".join(f"<li>{html.escape(warning_text(w))}</li>" for w in warnings)
    return f"<b>Check the result before using it:</b><ul>{items}</ul>"


def format_duration(seconds: Optional[float]) -> str:
    """Short human duration: '0.4 s', '5.5 s', '12 s', '2 min 05 s', '1 h 03 min'; a time that is not zero never
    shows as '0 s' (below 0.05 s: 'under 0.1 s')."""
    if seconds is None:
        return ""
    if 0 < seconds < 0.05:
        return "under 0.1 s"
    if 0 < seconds and round(seconds, 1) < 10:
        return f"{seconds:.1f} s"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StagedProgress:
    """What the panel's progress bar shows for an engine command whose stages get fixed shares of the bar
    (``weights``: (stage, share) in order; ``titles``: each stage's name in the panel): :attr:`percent` of the
    whole, :meth:`label` with the ETA, and the status line :attr:`message`. A subclass maps the progress events
    (:meth:`update`)."""

    def __init__(self, weights: Sequence[Tuple[str, float]], titles: Dict[str, str]) -> None:
        self._order = [name for name, _ in weights]
        self._weights = dict(weights)
        self._titles = titles
        self.stage = ""
        self.fraction = 0.0
        self.eta_s: Optional[float] = None
        self.message = ""

    def update(self, data: Dict[str, Any]) -> None:
        raise NotImplementedError

    def _stage_base(self, stage: str) -> float:
        """The share of the bar the stages before ``stage`` fill."""
        return sum(self._weights[name] for name in self._order[:self._order.index(stage)])

    def _title(self, stage: str) -> str:
        return self._titles.get(stage, stage.capitalize())

    @property
    def percent(self) -> int:
        return int(round(100 * self.fraction))

    def label(self, percent_text: str = "") -> str:
        """'Translating: 45%, about 1 min 20 s left'; ``percent_text`` replaces the number (Qt's '%p%')."""
        text = f"{self._title(self.stage) or 'Starting'}: {percent_text or str(self.percent) + '%'}"
        if self.eta_s:
            text += f", about {format_duration(self.eta_s)} left"
        return text


class ProgressTracker(StagedProgress):
    """Maps a translation's per-stage progress events to one percentage for the whole run, plus a label with the
    ETA.

    Stages reached later never lower the bar; a stage that restarts (the engine retries inference on the CPU
    after a GPU out-of-memory) moves it back within that stage only, which is what really happens.
    """

    def __init__(self) -> None:
        super().__init__(STAGE_WEIGHTS, STAGE_TITLES)
        self._base = 0.0
        self._stage_message = ""

    def update(self, data: Dict[str, Any]) -> None:
        stage = str(data.get("stage", ""))
        fraction = data.get("fraction")
        if fraction is None:
            total = data.get("total") or 0
            fraction = (data.get("done", 0) / total) if total else 0.0
        fraction = min(1.0, max(0.0, float(fraction)))
        if stage in self._weights:
            base = self._stage_base(stage)
            if base >= self._base:
                self._base = base
                self.fraction = base + self._weights[stage] * fraction
        message = str(data.get("message") or "")
        if message or stage != self.stage:  # the engine names what a stage does on its first event only
            self._stage_message = message
        self.stage = stage
        self.eta_s = data.get("eta_s") if stage == "infer" and fraction < 1.0 else None
        self.message = self._status(data)

    def _status(self, data: Dict[str, Any]) -> str:
        """The status line: the stage and what it does ('Preparing input: resampling, body mask and
        normalisation'), kept for the stage's later events; while translating, the windows done of the total from
        each event ('Translating: 83 of 146 windows on cpu')."""
        detail = self._stage_message
        total = int(data.get("total") or 0)
        if self.stage == "infer" and total > 0:
            done = min(total, max(0, int(data.get("done") or 0)))
            counted = f"{done} of {total} window{'s' if total != 1 else ''}"
            start = f"{total} windows"  # the engine's first event: '146 windows on cpu'
            if detail.startswith(start):
                detail = counted + detail[len(start):]
            else:
                detail = counted + (f" ({detail})" if detail else "")
        title = self._title(self.stage)
        if not title:
            return detail
        return f"{title}: {detail}" if detail else f"{title}..."
