"""Downloads a model package over HTTP(S) with the standard library (``medgan-translate models install``): the
bytes go to a ``.part`` file that a stopped download (a cut connection, a timeout, a cancel) leaves behind, and
the next download of it resumes with a ``Range`` request (a server that answers with the whole file restarts it
cleanly); a file larger than a package may unpack to is refused, and the whole is compared with the SHA-256 the
user gave before anything reads it. Apart from the archive checks and the model store so that the network part
of an install can be read, and replaced, on its own.
"""
from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Tuple

from .errors import Cancelled, InstallError
from .model_archive import CHUNK_BYTES, MAX_TOTAL_BYTES, human_size
from .progress import ProgressCallback, ProgressEvent, StageTimer
from .registry import sha256_file

#: The zip itself may be no larger than what it may unpack to.
MAX_DOWNLOAD_BYTES = MAX_TOTAL_BYTES
TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 0.2

LogCallback = Callable[[str, str], None]


def download(url: str, part: Path, progress: Optional[ProgressCallback] = None,
             is_cancelled: Callable[[], bool] = lambda: False, log: LogCallback = lambda level, message: None,
             timeout: float = TIMEOUT_S) -> Path:
    """Streams ``url`` into ``part``, resuming what is there with a ``Range`` request. Raises
    :class:`InstallError` (the part kept when the transfer stopped, so the next call resumes it) or
    :class:`Cancelled`."""
    for attempt in range(3):
        have = part.stat().st_size if part.exists() else 0
        response = _open(url, have, timeout)
        if response is None:  # 416: nothing more to send; the hash check decides whether the part is whole
            return part
        with response:
            status = response.status
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if have and status == 206:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != have:  # not the range asked for: start again from nothing
                    log("warning", f"The server sent bytes from {start} instead of {have}; downloading again.")
                    part.unlink()
                    continue
                if total is None and length is not None:
                    total = have + length
                mode = "ab"
            else:
                if have:
                    log("info", "The server does not resume downloads; downloading the whole file again.")
                have, total, mode = 0, length, "wb"
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                part.unlink(missing_ok=True)
                raise InstallError(f"The file at {url} is {human_size(total)}, more than the {human_size(MAX_DOWNLOAD_BYTES)} "
                                   "a model package may be. It was not downloaded.")
            if have:
                log("info", f"Resuming the download of {url} at {human_size(have)}.")
            _stream(response, part, mode, have, total, url, progress, is_cancelled)
            return part
    raise InstallError(f"The server at {url} did not send the part of the file asked for; try again later.")


def _open(url: str, have: int, timeout: float):
    headers = {"User-Agent": "medgan-translate model installer", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the scheme is checked: http(s)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            return None
        raise InstallError(f"The server answered {exc.code} {exc.reason} for {url}; check the URL. Nothing was "
                           "installed.") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.timeout) or isinstance(reason, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        raise InstallError(f"Could not reach {url}: {reason}. Check the URL and the network connection; nothing was "
                           "installed.") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise InstallError(f"The server at {url} did not answer within {timeout:g} s; try again later. Nothing was "
                           "installed.") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise InstallError(f"Could not download {url}: {exc}. Nothing was installed.") from exc


def _content_range(value: str) -> Tuple[Optional[int], Optional[int]]:
    """``bytes START-END/TOTAL`` → (START, TOTAL); TOTAL None when ``*``."""
    match = re.match(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)", value)
    if not match:
        return None, None
    total = match.group(3)
    return int(match.group(1)), (int(total) if total != "*" else None)


def _stream(response, part: Path, mode: str, have: int, total: Optional[int], url: str,
            progress: Optional[ProgressCallback], is_cancelled: Callable[[], bool]) -> None:
    done, start = have, time.perf_counter()
    last = {"time": 0.0}

    def report(final: bool = False) -> None:
        if progress is None:
            return
        now = time.perf_counter()
        if not final and now - last["time"] < PROGRESS_INTERVAL_S and done != have:
            return
        last["time"] = now
        elapsed = now - start
        eta = None
        if total and done > have and done < total:
            eta = elapsed / (done - have) * (total - done)
        elif total and done >= total:
            eta = 0.0
        message = f"{human_size(done)} of {human_size(total)}" if total else human_size(done)
        progress(ProgressEvent("download", done, total or 0, message, eta, elapsed))

    def stopped(reason: str) -> InstallError:
        of = f" of {human_size(total)}" if total else ""
        return InstallError(f"The download of {url} stopped after {human_size(done)}{of}: {reason}. What was downloaded "
                            f"is kept ({part}); run the same install again to resume. Nothing was installed.")

    read = getattr(response, "read1", response.read)  # what has arrived, so that a slow server still reports progress
    with open(part, mode) as f:
        report()
        while True:
            if is_cancelled():
                f.flush()
                raise Cancelled(f"Install cancelled; nothing was installed. The {human_size(done)} downloaded so far "
                                f"are kept in {part}, and the same install resumes from there.")
            try:
                block = read(CHUNK_BYTES)
            except (socket.timeout, TimeoutError) as exc:
                raise stopped("no data for too long") from exc
            except (http.client.HTTPException, OSError) as exc:
                raise stopped(f"the connection broke ({exc.__class__.__name__}: {exc})") from exc
            if not block:
                break
            f.write(block)
            done += len(block)
            if done > MAX_DOWNLOAD_BYTES:
                f.close()
                part.unlink(missing_ok=True)
                raise InstallError(f"The file at {url} is larger than the {human_size(MAX_DOWNLOAD_BYTES)} a model "
                                   "package may be; the download was stopped and deleted.")
            report()
    if total is not None and done < total:
        raise stopped("the server closed the connection")
    report(final=True)


def check_sha256(part: Path, expected: str, url: str, progress: Optional[ProgressCallback]) -> None:
    timer = StageTimer("verify", 1, progress)
    timer.start("SHA-256 of the download")
    actual = sha256_file(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise InstallError(f"The file downloaded from {url} has SHA-256 {actual}, not {expected} as given with --sha256. "
                           "It was deleted and nothing was extracted or installed. Check the URL and the hash the "
                           "model's publisher gives.")
    timer.finish()
