"""What every ``medgan-translate`` subcommand shares: the registry ``main`` dispatches on, argparse refusals as
:class:`UsageError` (so JSON mode can answer them with an ``error`` event), the argument types that refuse
nonsense counts and timeouts, :class:`Output` (JSON lines for programs, text for people) and the signal handlers
that turn SIGINT/SIGTERM into a cancel. Kept apart from :mod:`.cli` so that the modules holding subcommands
(:mod:`.cli_models`) and the entry point import it without importing each other.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Callable, Dict

COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    """Registers a subcommand's handler under its parser name, for :func:`.cli.main` to dispatch on; the
    modules holding subcommands register theirs when :mod:`.cli` imports them."""

    def register(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = func
        return func

    return register


class UsageError(Exception):
    """A command line argparse refuses, raised instead of argparse's exit so that ``main`` answers it like any
    other error (in JSON mode, with an ``error`` object)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """argparse's parser, raising :class:`UsageError` where argparse would print and exit; its subparsers are
    of this class too."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self, message)


def positive_int(text: str) -> int:
    """argparse type for counts such as ``--threads``: 0 or -3 used to be taken silently as 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got '{text}'")
    return value


def positive_seconds(text: str) -> float:
    """argparse type for ``--timeout``: 0 would make every read fail at once."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got '{text}'")
    return value


class Output:
    """Where messages go: JSON lines for programs, plain text for people."""

    def __init__(self, mode: str) -> None:
        self.json = mode == "json"
        self.mode = mode

    def emit(self, event: str, **fields) -> None:
        if self.json:
            sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
            sys.stdout.flush()

    def log(self, level: str, message: str) -> None:
        if self.json:
            self.emit("log", level=level, message=message)
        else:
            print(f"{level}: {message}", file=sys.stderr)

    def warning(self, warning) -> None:
        """A scan check's :class:`~MedGANTranslateLib.scan_report.ScanWarning`: a ``warning`` event (code,
        input, message, advice), or one ``warning:`` line on stderr."""
        if self.json:
            self.emit("warning", **warning.to_dict())
        else:
            print(f"warning: [{warning.code}] {warning.text()}", file=sys.stderr)

    def progress_callback(self):
        from .progress import bar_reporter, json_lines_reporter

        if self.mode == "json":
            return json_lines_reporter(sys.stdout)
        if self.mode == "bar":
            return bar_reporter(sys.stderr)
        return None


def install_cancel_handlers(token) -> None:
    """SIGINT/SIGTERM set the cancel token; the engine stops at the next stage or window and cleans up (exit
    130, every output path as it was). A signal after the outputs' last cancel check, just before they move
    into place (:meth:`.outputs.OutputSet.commit`), is too late: the job completes and exits 0, its outputs in
    place, and :func:`.cli.console` ignores the signals from the command's end to the process's exit."""

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        token.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
