"""``medgan-translate serve``: the HTTP side of the web face (aiohttp).

Security model (docs/web.md): it listens on 127.0.0.1 unless told otherwise, and then checks the Host header
(no DNS rebinding); on any other interface every request needs the access token printed at start (or given
in ``MEDGAN_TRANSLATE_TOKEN``). Each browser session (an HttpOnly, SameSite=Strict cookie) gets its own
process and folder; state-changing requests need a custom header, so another site's page cannot send them.
The browser names files only as paths under ``--data-root`` (checked by :mod:`.confinement`), uploads go to
the session's folder within a size limit and are read with the engine's checks, and models only by their
registry key. One translation at a time per session; sessions idle too long are closed with their files.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import quote

from aiohttp import web

from MedGANTranslateLib.errors import InputError

from .confinement import RequestError, inside, listing, suffix_of
from .roles import ROLES
from .session_process import SessionProcess

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
SESSION_COOKIE = "medgan_session"
TOKEN_COOKIE = "medgan_token"
TOKEN_ENV = "MEDGAN_TRANSLATE_TOKEN"
REQUEST_HEADER = "X-MedGAN-Request"  # on every POST: a cross-site form cannot send a custom header
LOOPBACK_NAMES = ("localhost",)
EXPIRY_CHECK_S = 30.0
MAX_VIEW_SIDE = 1600


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_root: Optional[Path] = None
    token: Optional[str] = None  # required when set
    max_upload_bytes: int = 2 << 30
    max_sessions: int = 4
    idle_s: float = 30 * 60.0
    work_dir: Optional[Path] = None
    models_dirs: List[str] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def access_token(host: str, given: Optional[str]) -> Optional[str]:
    """The token requests must carry: the one given, else a new one when ``host`` is not a loopback address."""
    if given:
        return given
    return None if is_loopback(host) else secrets.token_urlsafe(24)


@dataclass
class _Session:
    process: SessionProcess
    last_seen: float
    busy_uploads: int = 0


class Sessions:
    """Browser sessions by cookie, each with its own :class:`SessionProcess` and folder under ``work_dir``."""

    def __init__(self, settings: Settings, work_dir: Path) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self._sessions: Dict[str, _Session] = {}
        self._starting: Dict[str, asyncio.Lock] = {}
        self._issued: Dict[str, float] = {}  # keys given to browsers, with when they were last seen

    def issued(self, key: Optional[str]) -> bool:
        """Whether ``key`` is a session cookie this server gave out (a session's process starts on first use)."""
        if key is None or key not in self._issued:
            return False
        self._issued[key] = time.monotonic()
        return True

    def issue(self) -> str:
        key = secrets.token_urlsafe(32)
        self._issued[key] = time.monotonic()
        return key

    async def get(self, key: str) -> _Session:
        lock = self._starting.setdefault(key, asyncio.Lock())
        async with lock:
            session = self._sessions.get(key)
            if session is None:
                if len(self._sessions) >= self.settings.max_sessions:
                    raise RequestError(503, f"The server has {len(self._sessions)} sessions open, the most it allows "
                                            "(--max-sessions); try again when one has closed.")
                folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.work_dir))
                process = await asyncio.to_thread(SessionProcess, folder, self.settings.models_dirs)
                session = self._sessions[key] = _Session(process, time.monotonic())
            session.last_seen = time.monotonic()
            return session

    async def call(self, key: str, method: str, /, **arguments: Any) -> Any:
        session = await self.get(key)
        try:
            return await asyncio.to_thread(session.process.call, method, **arguments)
        finally:
            session.last_seen = time.monotonic()

    async def close_idle(self) -> None:
        now = time.monotonic()
        for key, seen in list(self._issued.items()):
            session = self._sessions.get(key)
            if session is not None:
                seen = max(seen, session.last_seen)
            if now - seen > self.settings.idle_s and not (session is not None and session.busy_uploads):
                await self.close(key)

    async def close(self, key: str) -> None:
        self._issued.pop(key, None)
        session = self._sessions.pop(key, None)
        self._starting.pop(key, None)
        if session is not None:
            await asyncio.to_thread(session.process.close)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(key) for key in list(self._sessions)))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _presented_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):]
    return request.query.get("token") or request.cookies.get(TOKEN_COOKIE, "")


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    """Host check on loopback, the token elsewhere, the custom header on POST, the session cookie; turns a
    :class:`RequestError` into a JSON error with its status."""
    settings: Settings = request.app["settings"]
    if is_loopback(settings.host):
        if not is_loopback(request.url.host or ""):
            return _error(421, f"This server answers only to a loopback address (127.0.0.1 or localhost), not '{request.host}'.")
    if settings.token is not None:
        presented = _presented_token(request)
        if not presented or not hmac.compare_digest(presented.encode(), settings.token.encode()):
            return _error(401, "This server needs its access token: open the address it printed when it started "
                               "(it ends with ?token=...), or ask whoever started it.")
        if "token" in request.query and request.method == "GET" and not request.path.startswith("/api/"):
            response = web.HTTPFound(request.rel_url.with_query({k: v for k, v in request.query.items() if k != "token"}))
            response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="Strict")
            raise response
    if request.method == "POST" and request.headers.get(REQUEST_HEADER) != "1":
        return _error(403, f"POST requests need the header {REQUEST_HEADER}: 1 (the page sends it).")
    key = request.cookies.get(SESSION_COOKIE)
    fresh = not request.app["sessions"].issued(key)
    if fresh:
        key = request.app["sessions"].issue()
    request["session"] = key
    try:
        response = await handler(request)
    except RequestError as exc:
        response = _error(exc.status, str(exc))
    if fresh:
        response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="Strict")
    return response


async def _json_body(request: web.Request) -> Dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise RequestError(400, f"The request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    return body


def _role(value: Any) -> str:
    if value not in ROLES:
        raise RequestError(400, f"Choose what the scan is: one of {', '.join(ROLES)}.")
    return value


async def page(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    if name not in STATIC_FILES:
        raise RequestError(404, f"No page '{name}'.")
    return web.FileResponse(STATIC / name, headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-store"})


async def files(request: web.Request) -> web.Response:
    root = request.app["settings"].data_root
    return web.json_response({"data_root": root is not None, "files": listing(root) if root is not None else []})


async def models(request: web.Request) -> web.Response:
    return web.json_response(await request.app["sessions"].call(request["session"], "models"))


async def state(request: web.Request) -> web.Response:
    return web.json_response(await request.app["sessions"].call(request["session"], "state"))


async def load(request: web.Request) -> web.Response:
    body = await _json_body(request)
    root = request.app["settings"].data_root
    if root is None:
        raise RequestError(403, "This server has no data root (--data-root); upload the scan instead.")
    path = inside(root, str(body.get("path", "")))
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return web.json_response(await request.app["sessions"].call(
        request["session"], "load", role=_role(body.get("role")), path=str(path), name=name))


async def upload(request: web.Request) -> web.Response:
    """A multipart upload (field ``file``) of one image file or a zipped DICOM series, streamed to the session's
    folder within the size limit, then read like any input."""
    settings: Settings = request.app["settings"]
    role = _role(request.query.get("role"))
    sessions: Sessions = request.app["sessions"]
    session = await sessions.get(request["session"])
    reader = await request.multipart()
    part = await reader.next()
    if part is None or part.name != "file" or not part.filename:
        raise RequestError(400, "Send the scan as the multipart field 'file'.")
    suffix = suffix_of(part.filename)
    if not suffix:
        raise RequestError(400, f"'{part.filename}' is not a scan this server reads: upload NIfTI (.nii, .nii.gz), "
                                "NRRD (.nrrd), MetaImage (.mha), an enhanced DICOM file (.dcm) or a zip of one DICOM series.")
    target = session.process.folder / "uploads" / f"{role}-{secrets.token_hex(4)}{suffix}"
    target.parent.mkdir(exist_ok=True)
    written = 0
    session.busy_uploads += 1
    try:
        with open(target, "wb") as out:
            while True:
                chunk = await part.read_chunk(1 << 20)
                if not chunk:
                    break
                written += len(chunk)
                if written > settings.max_upload_bytes:
                    raise RequestError(413, f"The upload is larger than {settings.max_upload_bytes >> 20} MB, this "
                                            "server's limit (--max-upload-mb).")
                out.write(chunk)
        name = part.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1][: -len(suffix)] or role
        value = await sessions.call(request["session"], "load", role=role, path=str(target), name=name)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        session.busy_uploads -= 1
    return web.json_response(value)


async def translate(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return web.json_response(await request.app["sessions"].call(
        request["session"], "translate", key=str(body.get("model", "")), uncertainty=bool(body.get("uncertainty")),
        n4=bool(body.get("n4"))))


async def cancel(request: web.Request) -> web.Response:
    return web.json_response(await request.app["sessions"].call(request["session"], "cancel"))


async def view_settings(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        opacity = float(body.get("opacity", 0.5))
        threshold = None if body.get("threshold") is None else float(body["threshold"])
    except (TypeError, ValueError) as exc:
        raise RequestError(400, "The opacity (0 to 1) and the uncertainty threshold must be numbers.") from exc
    return web.json_response(await request.app["sessions"].call(
        request["session"], "set_view", mode=str(body.get("mode")), third=str(body.get("third")), opacity=opacity,
        threshold=threshold))


def _number(request: web.Request, name: str, default: Optional[float]) -> Optional[float]:
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise RequestError(400, f"'{name}' must be a number.") from exc


async def view(request: web.Request) -> web.Response:
    width = int(min(MAX_VIEW_SIDE, max(16, _number(request, "w", 400))))
    height = int(min(MAX_VIEW_SIDE, max(16, _number(request, "h", 400))))
    png = await request.app["sessions"].call(request["session"], "render", pane=request.match_info["pane"],
                                             offset=_number(request, "offset", None), width=width, height=height)
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-store"})


async def color_bar(request: web.Request) -> web.Response:
    return web.json_response(await request.app["sessions"].call(request["session"], "color_bar",
                                                                pane=request.match_info["pane"]))


async def download(request: web.Request) -> web.StreamResponse:
    found = await request.app["sessions"].call(request["session"], "download", name=request.match_info["name"])
    return web.FileResponse(found["path"], headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found['filename'])}", "Cache-Control": "no-store"})


async def close_session(request: web.Request) -> web.Response:
    """Ends the browser's session now: its engine cancelled, its process ended, its files removed."""
    await request.app["sessions"].close(request["session"])
    response = web.json_response({"closed": True})
    response.del_cookie(SESSION_COOKIE)
    return response


async def _expire_sessions(app: web.Application) -> None:
    while True:
        await asyncio.sleep(EXPIRY_CHECK_S)
        await app["sessions"].close_idle()


async def _start_background(app: web.Application):
    task = asyncio.create_task(_expire_sessions(app))
    yield
    task.cancel()
    await app["sessions"].close_all()


def make_app(settings: Settings, work_dir: Path) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=1 << 20)
    app["settings"] = settings
    app["sessions"] = Sessions(settings, work_dir)
    app.cleanup_ctx.append(_start_background)
    app.add_routes([
        web.get("/", page), web.get("/static/{name}", page),
        web.get("/api/files", files), web.get("/api/models", models), web.get("/api/state", state),
        web.post("/api/load", load), web.post("/api/upload", upload), web.post("/api/translate", translate),
        web.post("/api/cancel", cancel), web.post("/api/view", view_settings), web.post("/api/close", close_session),
        web.get("/api/view/{pane}.png", view), web.get("/api/colorbar/{pane}", color_bar),
        web.get("/api/download/{name}", download),
    ])
    return app


async def _serve(settings: Settings, work_dir: Path) -> None:
    runner = web.AppRunner(make_app(settings, work_dir), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise InputError(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}. Choose another "
                              "--port or stop what uses it.") from exc
    port = site._server.sockets[0].getsockname()[1]
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{shown}:{port}/" + (f"?token={settings.token}" if settings.token else "")
    print(f"MedGANTranslate web face on {url}", flush=True)
    print("Research use only: synthetic images are not for clinical decisions. Stop with Ctrl+C.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("Stopping: closing the sessions (running translations are cancelled).", flush=True)
    await runner.cleanup()


def serve(settings: Settings) -> int:
    """Runs the server until SIGINT/SIGTERM; every session's folder goes when it stops."""
    if settings.data_root is not None and not settings.data_root.is_dir():
        raise InputError(f"--data-root {settings.data_root} is not a folder; give the folder holding the scans.")
    settings.token = access_token(settings.host, settings.token or os.environ.get(TOKEN_ENV))
    own = settings.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="medgan-web-")) if own else settings.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(_serve(settings, work_dir))
    finally:
        if own:
            shutil.rmtree(work_dir, ignore_errors=True)
    logging.info("MedGANTranslate web face stopped")
    return 0
