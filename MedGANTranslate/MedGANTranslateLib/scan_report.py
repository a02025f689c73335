"""What the scan checks report: one :class:`ScanWarning` per reason to distrust a translation, gathered with the
checks that could not run and the measurements behind both in a :class:`ScanReport`. Kept apart from the checks
(:mod:`.scan_checks`) because the pipeline and its callers pass the warnings on and write them into the output's
provenance without running a check themselves.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List

CHECKS = ("modality_mismatch", "skull_stripped", "field_of_view", "spacing", "intensity_distribution",
          "irregular_geometry", "input_overlap", "reference_modality", "reference_overlap", "intensity_outliers",
          "white_matter")


@dataclass(frozen=True)
class ScanWarning:
    """One reason to distrust a translation of this scan: ``code`` (one of :data:`CHECKS`), ``message`` (what
    was found, with the numbers), ``advice`` (what to do), ``input`` (the card input it is about, if any)."""

    code: str
    message: str
    advice: str
    input: str = ""

    def text(self) -> str:
        return f"{self.message} {self.advice}"

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)


WarningCallback = Callable[[ScanWarning], None]


@dataclass
class ScanReport:
    """What :func:`~.scan_checks.check_scan` found: ``warnings``, ``skipped`` (check → why it could not run) and the
    ``measurements`` behind both (printed by the calibration script)."""

    warnings: List[ScanWarning] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    measurements: Dict[str, Any] = field(default_factory=dict)

    def skipped_text(self) -> str:
        """The checks that did not run, grouped by reason: 'a, b (reason); c (other reason)'."""
        by_reason: Dict[str, List[str]] = {}
        for check, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(check)
        return "; ".join(f"{', '.join(checks)} ({reason})" for reason, checks in by_reason.items())

    def provenance(self) -> Dict[str, str]:
        """Output metadata: the warnings and the checks that did not run, as JSON lists."""
        return {
            "MedGANTranslate.Warnings": json.dumps([w.to_dict() for w in self.warnings], sort_keys=True),
            "MedGANTranslate.ChecksNotRun": json.dumps(
                [{"check": k, "reason": v} for k, v in self.skipped.items()], sort_keys=True),
        }
