"""Where the project's real scans are (``../shared/real-data`` beside the checkout, or ``MEDGAN_REAL_DATA``), and a
skip that says why when they are absent, so a user's clone without them still passes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_DATA = Path(os.environ.get("MEDGAN_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "real-data"))

#: The real T1-weighted head scans (whole heads, several scanners), by file name under ``t1/``.
REAL_T1 = (
    "open_ms_patient01_T1W.nii.gz",
    "open_ms_patient04_T1W.nii.gz",
    "philips_adni_mprage_1mm.nii.gz",
    "siemens_xa30_t1w_2mm.nii.gz",
)


def real_file(*parts: str) -> Path:
    """Path of a real-data file, or a skip naming what is missing and where it was looked for."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real scan {'/'.join(parts)} not found under {REAL_DATA} (set MEDGAN_REAL_DATA to the folder)")
    return path
