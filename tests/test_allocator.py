"""The worker-process allocator setting: freed large arrays stay in the process for reuse instead of going back
to the kernel (and coming back as fresh pages to fault in and zero)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LIB = str(Path(__file__).resolve().parents[1] / "MedGANTranslate")
MB = 2**20
PROBE = """
import os, sys
import numpy as np
sys.path.insert(0, {lib!r})
{setup}
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = resident()
array = np.ones(200 * 2**20 // 8)  # 200 MB, written, so every page is resident
del array
print(resident() - before)
"""


def _kept_after_free(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE.format(lib=LIB, setup=setup)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is a Linux setting")


@linux_only
def test_keep_freed_memory_keeps_a_freed_large_array_for_reuse_where_glibc_would_unmap_it():
    assert _kept_after_free("") < 20 * MB  # glibc's default: a 200 MB array is its own mapping, gone on free
    kept = _kept_after_free("from MedGANTranslateLib.allocator import keep_freed_memory\n"
                            "assert keep_freed_memory()")
    assert kept > 180 * MB


@linux_only
def test_the_command_line_sets_it_and_importing_the_engine_does_not():
    assert _kept_after_free("from MedGANTranslateLib import pipeline, cli") < 20 * MB
    assert _kept_after_free("from MedGANTranslateLib import cli\n"
                            "assert cli.main(['models', 'list']) == 0") > 180 * MB
