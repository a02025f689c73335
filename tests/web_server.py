"""The web face as a user starts it (``medgan-translate serve`` in its own process, on a free port) and a small
HTTP client with its own cookie jar (one browser session each) for the web face's tests."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

START_TIMEOUT_S = 60


def needs_web_face() -> None:
    """Skips, saying why, where the web face's packages are missing (Python < 3.10, no 'web' extra)."""
    pytest.importorskip("aiohttp", reason="the web face needs aiohttp (pip install -e '.[dev]')")
    pytest.importorskip("trame_slicer", reason="the web face needs trame-slicer[standalone] (Python >= 3.10)")


@contextmanager
def running_server(args: List[str], env: Optional[Dict[str, str]] = None) -> Iterator[str]:
    """``medgan-translate serve --port 0 ARGS`` until the block ends (then SIGTERM); yields the URL it printed."""
    command = [sys.executable, "-m", "MedGANTranslateLib.cli", "serve", "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "2", **(env or {})})
    lines: List[str] = []
    try:
        url = None
        while url is None:
            line = process.stdout.readline()
            if not line:
                raise AssertionError("the server stopped before printing its address:\n" + "".join(lines))
            lines.append(line)
            found = re.search(r"web face on (http://\S+)", line)
            url = found.group(1) if found else None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


class Client:
    """One browser session: its own cookies; ``post`` sends the page's request header unless told not to."""

    def __init__(self, url: str) -> None:
        self.base = url.split("?")[0].rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
                method: Optional[str] = None) -> Tuple[int, bytes, Dict[str, str]]:
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {}, method=method)
        try:
            with self.opener.open(request, timeout=300) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
        status, body, found = self.request(path, headers=headers)
        return status, json.loads(body) if "json" in found.get("Content-Type", "") else body

    def post(self, path: str, body: Any = None, header: bool = True, raw: Optional[bytes] = None,
             content_type: str = "application/json") -> Tuple[int, Any]:
        headers = {"Content-Type": content_type}
        if header:
            headers["X-MedGAN-Request"] = "1"
        data = raw if raw is not None else json.dumps(body or {}).encode()
        status, answer, found = self.request(path, data=data, headers=headers, method="POST")
        return status, json.loads(answer) if "json" in found.get("Content-Type", "") else answer

    def upload(self, role: str, filename: str, content: bytes) -> Tuple[int, Any]:
        boundary = "----medgan-test-boundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
        return self.post(f"/api/upload?role={role}", raw=body, content_type=f"multipart/form-data; boundary={boundary}")


def write_phantom(folder: Path, shape=(96, 112, 96), spacing=(2.0, 2.0, 2.0), names=("t1", "ct")) -> Dict[str, Path]:
    """Volumes ``names`` of a phantom head (seed 3, never used in training) under ``folder``."""
    from MedGANTranslateLib.phantom import make_phantom
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(seed=3, shape=shape, spacing=spacing)
    paths = {name: folder / f"{name}.nii.gz" for name in names}
    for name, path in paths.items():
        sitk.WriteImage(getattr(phantom, name), str(path))
    return paths
