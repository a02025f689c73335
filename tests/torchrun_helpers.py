"""Launching engine commands under ``torchrun`` (``python -m torch.distributed.run``) with 2 CPU processes, and
finding its ranks' processes to kill them (torchrun starts each worker in a session of its own, so killing
torchrun's process group leaves the workers running)."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Dict, List


def torchrun(args: List[str], processes: int = 2) -> List[str]:
    """The command line of ``medgan-translate ARGS`` under torchrun on a free local port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
            "127.0.0.1", "--master_port", str(port), "-m", "MedGANTranslateLib.cli", *args]


def rank_processes(marker: str) -> Dict[int, int]:
    """{rank: pid} of the running workers whose command line contains ``marker`` (e.g. their output folder)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = dict(item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0") if b"=" in item)
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"RANK" in environ and b"torch.distributed.run" not in command and marker.encode() in command:
            found[int(environ[b"RANK"])] = int(entry.name)
    return found


def kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
