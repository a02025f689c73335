"""The engine's command line run inside the test process (``cli.main``), for the test modules that drive it so
(imported by them): ``cli.main`` installs signal handlers, a malloc setting and a torch thread count, which
:func:`process_settings_kept` keeps from the test process (no malloc setting at all) and gives back afterwards."""
from __future__ import annotations

import io
import signal
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Iterator, Tuple

import pytest
import torch

from MedGANTranslateLib import cli


@contextmanager
def process_settings_kept() -> Iterator[None]:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    patch = pytest.MonkeyPatch()
    patch.setattr(cli, "keep_freed_memory", lambda: None)
    try:
        yield
    finally:
        patch.undo()
        torch.set_num_threads(threads)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run(*args) -> Tuple[int, str, str]:
    """``medgan-translate ARGS`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()
