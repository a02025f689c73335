"""``medgan-translate models install URL --sha256 HASH``: against a real HTTP server on 127.0.0.1 (Range
requests, connections cut after N bytes, corrupted bytes), with zips of a real tiny model folder. Every refused
package leaves nothing in the store; an interrupted download leaves only its ``.part`` and is resumed."""
from __future__ import annotations

import hashlib
import io
import json
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import torch

from MedGANTranslateLib import model_archive, model_download, model_install, registry
from MedGANTranslateLib.errors import Cancelled, CardError, InstallError, WeightsError
from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.networks import build_network

from cli_in_process import process_settings_kept, run

MODEL_ID = "tiny-install"


# ------------------------------------------------------------------------------------------- the server


class Server:
    """What the handler serves and what it saw: ``files`` by path; ``cut_after`` bytes of body, then the
    connection is closed (once); ``corrupt`` flips bytes; ``ignore_range`` answers every request with 200."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.cut_after: Optional[int] = None
        self.corrupt = False
        self.ignore_range = False
        self.requests: List[Tuple[str, Optional[str]]] = []
        self.httpd: Optional[ThreadingHTTPServer] = None

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    @property
    def ranges(self) -> List[Optional[str]]:
        return [r for _, r in self.requests]


def _handler(server: Server):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            server.requests.append((self.path, self.headers.get("Range")))
            body = server.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            if server.corrupt:
                body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
            start = 0
            wanted = self.headers.get("Range")
            if wanted and not server.ignore_range and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[len("bytes="):-1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload = body[start:]
            if server.cut_after is not None:
                payload, server.cut_after = payload[:server.cut_after], None
                self.close_connection = True
            self.wfile.write(payload)
            self.wfile.flush()

    return Handler


@pytest.fixture
def server():
    state = Server()
    state.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=state.httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.httpd.shutdown()
    state.httpd.server_close()
    thread.join(5)


# ------------------------------------------------------------------------------------------- packages


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(registry.HOME_ENV_VAR, str(tmp_path / "home"))
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    return registry.model_store()


@pytest.fixture
def model_folder(tmp_path) -> Path:
    data = tiny_card_data(MODEL_ID)
    torch.manual_seed(0)
    save_model_folder(tmp_path / "src" / MODEL_ID, data, network=build_network(data["architecture"]))
    return tmp_path / "src" / MODEL_ID


def zip_bytes(folder: Optional[Path], top: Optional[str] = MODEL_ID, extra=(), compression=zipfile.ZIP_DEFLATED) -> bytes:
    """The model folder zipped (inside ``top/``, or flat when ``top`` is None), plus ``extra`` members: (name,
    bytes) or (ZipInfo, bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        if folder is not None:
            for path in sorted(folder.iterdir()):
                archive.write(path, f"{top}/{path.name}" if top else path.name)
        for name, data in extra:
            archive.writestr(name, data)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve(server: Server, data: bytes, path: str = "/model.zip") -> Tuple[str, str]:
    server.files[path] = data
    return server.url(path), sha(data)


def assert_nothing_installed(store: Path, part_kept: bool = False) -> None:
    """No model folder, no staging leftovers; the download only when it was interrupted."""
    entries = sorted(p.name for p in store.iterdir()) if store.is_dir() else []
    assert set(entries) <= {".downloads", ".staging"}, entries
    if (store / ".staging").is_dir():
        assert list((store / ".staging").iterdir()) == []
    downloads = sorted(p.name for p in (store / ".downloads").iterdir()) if (store / ".downloads").is_dir() else []
    assert all(name.endswith(".part") for name in downloads), downloads
    assert bool(downloads) == part_kept, downloads
    assert MODEL_ID not in [s.id for s in registry.list_models()]


# ------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(autouse=True)
def engine_in_this_process():
    with process_settings_kept():
        yield


def run_json(*args) -> Tuple[int, List[Dict]]:
    code, stdout, _ = run(*args, "--progress", "json")
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [e["event"] for e in events if e["event"] in ("done", "error")] == [events[-1]["event"]], stdout
    return code, events


def install(url: str, digest: str, *more) -> Tuple[int, List[Dict]]:
    return run_json("models", "install", url, "--sha256", digest, *more)


# ------------------------------------------------------------------------------------------- success


def test_installed_model_is_listed_and_resolved(server, store, model_folder):
    url, digest = serve(server, zip_bytes(model_folder))
    code, events = install(url, digest)
    assert code == 0, events
    done = events[-1]
    folder = store / f"{MODEL_ID}-0.1.0"
    assert done["status"] == "installed" and done["source"] == {"url": url, "sha256": digest}
    model = done["model"]
    assert (model["id"], model["version"], model["folder"]) == (MODEL_ID, "0.1.0", str(folder.resolve()))
    assert model["title"] == "Tiny test model (MR to CT)" and model["license"] == "Apache-2.0"
    assert model["intended_use"].startswith("Research use only")
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    assert list(dict.fromkeys(stages)) == ["download", "verify", "extract", "check"]
    last_download = [e for e in events if e["event"] == "progress" and e["stage"] == "download"][-1]
    assert last_download["done"] == last_download["total"] == len(server.files["/model.zip"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in model_folder.iterdir())
    assert list((store / ".downloads").iterdir()) == [] and list((store / ".staging").iterdir()) == []

    code, stdout, _ = run("models", "list", "--json")
    listed = {m["id"]: m for m in json.loads(stdout)}
    assert code == 0 and listed[MODEL_ID]["path"] == str((folder / "model.json").resolve())
    card = registry.resolve_model(MODEL_ID)
    assert card.folder == folder.resolve() and registry.resolve_model(f"{MODEL_ID}@0.1.0").folder == folder.resolve()
    assert registry.search_dirs()[-1] == store, "the store comes last: it never shadows another folder's model"


def test_text_output_names_licence_and_intended_use_and_a_second_install_is_a_no_op(server, store, model_folder):
    url, digest = serve(server, zip_bytes(model_folder, top=None))  # the files directly, no folder
    code, stdout, _ = run("models", "install", url, "--sha256", digest.upper(), "--progress", "none")
    assert code == 0
    folder = (store / f"{MODEL_ID}-0.1.0").resolve()
    assert f"Installed: {MODEL_ID} v0.1.0, Tiny test model (MR to CT)" in stdout
    assert "licence:      Apache-2.0" in stdout and "intended use: Research use only" in stdout
    assert f"folder:       {folder}" in stdout
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    code, events = install(url, digest)
    assert code == 0 and events[-1]["status"] == "already-installed"
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_different_files_under_an_installed_version_need_force(server, store, model_folder):
    url, digest = serve(server, zip_bytes(model_folder))
    assert install(url, digest)[0] == 0
    card = json.loads((model_folder / "model.json").read_text())
    card["description"] = "Changed without a new version."
    (model_folder / "model.json").write_text(json.dumps(card))
    url2, digest2 = serve(server, zip_bytes(model_folder), "/changed.zip")
    code, events = install(url2, digest2)
    assert code == 2 and events[-1]["kind"] == "install" and "--force" in events[-1]["message"]
    folder = store / f"{MODEL_ID}-0.1.0"
    assert json.loads((folder / "model.json").read_text())["description"] != card["description"]
    code, events = install(url2, digest2, "--force")
    assert code == 0 and events[-1]["status"] == "replaced"
    assert json.loads((folder / "model.json").read_text())["description"] == card["description"]
    assert list((store / ".staging").iterdir()) == [] and list((store / ".downloads").iterdir()) == []


def test_program_files_in_a_package_are_kept_but_never_run(server, store, model_folder, tmp_path):
    marker = tmp_path / "ran"
    code_file = f"open({str(marker)!r}, 'w').write('ran')\n"
    url, digest = serve(server, zip_bytes(model_folder, extra=[(f"{MODEL_ID}/__init__.py", code_file),
                                                                (f"{MODEL_ID}/setup.py", code_file)]))
    code, events = install(url, digest)
    assert code == 0
    notes = [e["message"] for e in events if e["event"] == "log"]
    assert any("__init__.py, setup.py" in n and "never imported or run" in n for n in notes), notes
    registry.resolve_model(MODEL_ID)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- refusals


def test_corrupted_download_is_refused_naming_both_hashes(server, store, model_folder):
    url, digest = serve(server, zip_bytes(model_folder))
    server.corrupt = True
    code, events = install(url, digest)
    actual = sha(bytes(b ^ 0xFF for b in server.files["/model.zip"][:64]) + server.files["/model.zip"][64:])
    message = events[-1]["message"]
    assert code == 2 and events[-1]["kind"] == "install"
    assert digest in message and actual in message and "nothing was extracted" in message
    assert_nothing_installed(store)


def test_wrong_sha256_is_refused(server, store, model_folder):
    url, digest = serve(server, zip_bytes(model_folder))
    wrong = "0" * 64
    code, events = install(url, wrong)
    assert code == 2 and wrong in events[-1]["message"] and digest in events[-1]["message"]
    assert_nothing_installed(store)
    code, events = install(url, "not-a-hash")
    assert code == 2 and "64 hexadecimal digits" in events[-1]["message"]


def _symlink(name: str, target: str) -> Tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def _fifo(name: str) -> Tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info, ""


@pytest.mark.parametrize("member, why", [
    ((f"{MODEL_ID}/../../escaped.txt", "x"), "leaves the model folder"),
    (("..\\escaped.txt", "x"), "leaves the model folder"),
    (("/tmp/absolute.txt", "x"), "absolute path"),
    (("C:/absolute.txt", "x"), "absolute path"),
    (_symlink(f"{MODEL_ID}/link", "/etc/passwd"), "symbolic link"),
    (_fifo(f"{MODEL_ID}/fifo"), "special file"),
    ((f"{MODEL_ID}/MODEL.JSON", "{}"), "appears twice"),
])
def test_unsafe_members_are_refused_before_extraction(server, store, model_folder, tmp_path, member, why):
    url, digest = serve(server, zip_bytes(model_folder, extra=[member]))
    code, events = install(url, digest)
    assert code == 2 and events[-1]["kind"] == "install" and why in events[-1]["message"], events[-1]
    assert_nothing_installed(store)
    assert not (tmp_path / "escaped.txt").exists() and not (store.parent / "escaped.txt").exists()


def test_zip_bomb_is_refused(server, store, model_folder):
    zeros = ("bomb.bin", bytes(4 * 1024 * 1024))  # 4 MB of zeros deflate to about 4 kB: ratio ~1000
    url, digest = serve(server, zip_bytes(model_folder, extra=[(f"{MODEL_ID}/{zeros[0]}", zeros[1])]))
    code, events = install(url, digest)
    assert code == 2 and "zip bomb" in events[-1]["message"]
    assert_nothing_installed(store)


@pytest.mark.parametrize("limit, value, words", [("MAX_TOTAL_BYTES", 50_000, "unpacks to more than"),
                                                 ("MAX_MEMBERS", 1, "more than the 1 a model package")])
def test_size_and_member_limits(server, store, model_folder, monkeypatch, limit, value, words):
    monkeypatch.setattr(model_archive, limit, value)
    url, digest = serve(server, zip_bytes(model_folder))
    code, events = install(url, digest)
    assert code == 2 and words in events[-1]["message"], events[-1]
    assert_nothing_installed(store)


def test_sizes_are_counted_while_unpacking_not_taken_from_the_zip(server, store, model_folder, monkeypatch):
    """A zip's directory may understate its sizes; what is written is counted and held to the limit too."""
    data = zip_bytes(model_folder)
    real = model_install.check_archive

    def understated(archive, source):
        members = real(archive, source)
        monkeypatch.setattr(model_archive, "MAX_TOTAL_BYTES", 50_000)  # after the directory was checked
        return members

    monkeypatch.setattr(model_install, "check_archive", understated)
    url, digest = serve(server, data)
    code, events = install(url, digest)
    assert code == 2 and "unpacks to more than" in events[-1]["message"]
    assert_nothing_installed(store)


def test_not_a_zip_and_no_card_are_refused(server, store, model_folder):
    url, digest = serve(server, b"this is no zip archive" * 10)
    code, events = install(url, digest)
    assert code == 2 and "not a zip archive" in events[-1]["message"]
    assert_nothing_installed(store)
    url, digest = serve(server, zip_bytes(None, extra=[("readme.txt", "no model here")]), "/empty.zip")
    code, events = install(url, digest)
    assert code == 2 and "holds no model.json" in events[-1]["message"]
    assert_nothing_installed(store)


def test_invalid_card_is_refused(server, store, model_folder):
    card = json.loads((model_folder / "model.json").read_text())
    del card["intended_use"]
    card["inference"]["roi_size"] = "big"
    (model_folder / "model.json").write_text(json.dumps(card))
    url, digest = serve(server, zip_bytes(model_folder))
    code, events = install(url, digest)
    message = events[-1]["message"]
    assert code == 2 and events[-1]["kind"] == "card"
    assert "was refused" in message and "<package>/model.json" in message and "roi_size" in message
    assert ".staging" not in message
    assert_nothing_installed(store)


def test_weights_not_matching_the_card_are_refused(server, store, model_folder):
    weights = model_folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    url, digest = serve(server, zip_bytes(model_folder))
    code, events = install(url, digest)
    assert code == 2 and events[-1]["kind"] == "weights" and "do not match the card's SHA-256" in events[-1]["message"]
    assert_nothing_installed(store)


def test_weights_that_do_not_fit_the_network_are_refused_by_the_probe_load(server, store, model_folder):
    card = json.loads((model_folder / "model.json").read_text())
    card["architecture"]["params"]["ngf"] = 8  # the weights were saved for ngf 4
    (model_folder / "model.json").write_text(json.dumps(card))
    url, digest = serve(server, zip_bytes(model_folder))
    code, events = install(url, digest)
    assert code == 2 and events[-1]["kind"] == "weights" and "do not fit the network" in events[-1]["message"]
    assert_nothing_installed(store)


def test_http_errors_and_other_schemes_say_what_happened(server, store):
    code, events = install(server.url("/missing.zip"), "a" * 64)
    assert code == 2 and "answered 404" in events[-1]["message"]
    code, events = install("ftp://example.org/model.zip", "a" * 64)
    assert code == 2 and "Only http:// and https://" in events[-1]["message"]
    host, port = server.httpd.server_address[:2]
    server.httpd.shutdown()
    server.httpd.server_close()
    code, events = install(f"http://{host}:{port}/model.zip", "a" * 64)
    assert code == 2 and "Could not reach" in events[-1]["message"]
    assert_nothing_installed(store)


# ------------------------------------------------------------------------------------------- resume, cancel


def test_interrupted_download_is_kept_and_resumed_with_a_range_request(server, store, model_folder):
    data = zip_bytes(model_folder)
    url, digest = serve(server, data)
    half = len(data) // 2
    server.cut_after = half
    code, events = install(url, digest)
    message = events[-1]["message"]
    assert code == 2 and events[-1]["kind"] == "install"
    assert "stopped after" in message and "run the same install again to resume" in message
    part = store / ".downloads" / f"{digest}.part"
    assert part.stat().st_size == half
    assert_nothing_installed(store, part_kept=True)

    code, events = install(url, digest)
    assert code == 0, events[-1]
    assert server.ranges == [None, f"bytes={half}-"]
    assert any(e["event"] == "log" and "Resuming" in e["message"] for e in events)
    assert not part.exists() and registry.resolve_model(MODEL_ID).folder == (store / f"{MODEL_ID}-0.1.0").resolve()


def test_a_server_that_ignores_range_restarts_the_download_cleanly(server, store, model_folder):
    data = zip_bytes(model_folder)
    url, digest = serve(server, data)
    server.cut_after = len(data) // 3
    assert install(url, digest)[0] == 2
    server.ignore_range = True
    code, events = install(url, digest)
    assert code == 0, events[-1]
    assert server.ranges[-1] == f"bytes={len(data) // 3}-"
    assert any(e["event"] == "log" and "does not resume" in e["message"] for e in events)


def test_cancel_from_the_progress_callback_stops_and_installs_nothing(server, store, model_folder, monkeypatch):
    monkeypatch.setattr(model_download, "CHUNK_BYTES", 1024)
    monkeypatch.setattr(model_download, "PROGRESS_INTERVAL_S", 0.0)
    data = zip_bytes(model_folder)
    url, digest = serve(server, data)
    cancel = threading.Event()
    seen = []

    def progress(event):
        seen.append((event.stage, event.done, event.total))
        if event.done >= 4096:
            cancel.set()

    with pytest.raises(Cancelled, match="nothing was installed"):
        model_install.install_model(url, digest, progress=progress, cancel=cancel)
    part = store / ".downloads" / f"{digest}.part"
    assert 4096 <= part.stat().st_size < len(data) and seen[-1][0] == "download"
    assert_nothing_installed(store, part_kept=True)

    result = model_install.install_model(url, digest, cancel=threading.Event())  # resumes
    assert result.status == "installed" and server.ranges[-1] == f"bytes={part_size(seen)}-"


def part_size(seen) -> int:
    return max(done for stage, done, _ in seen if stage == "download")


def test_cancel_accepts_a_callable_and_the_cli_token(server, store, model_folder):
    from MedGANTranslateLib.progress import CancelToken

    url, digest = serve(server, zip_bytes(model_folder))
    with pytest.raises(Cancelled):
        model_install.install_model(url, digest, cancel=lambda: True)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        model_install.install_model(url, digest, cancel=token)
    assert_nothing_installed(store, part_kept=True)


def test_staging_left_by_a_killed_install_is_swept(server, store, model_folder):
    import os

    stale = store / ".staging" / "killed-install"
    (stale / "unpacked").mkdir(parents=True)
    (stale / "unpacked" / "model.json").write_text("{}")
    os.utime(stale, (1, 1))
    url, digest = serve(server, zip_bytes(model_folder))
    assert install(url, digest)[0] == 0
    assert list((store / ".staging").iterdir()) == []


# ------------------------------------------------------------------------------------------- uninstall


def test_uninstall_removes_only_models_in_the_store(server, store, model_folder):
    url, digest = serve(server, zip_bytes(model_folder))
    assert install(url, digest)[0] == 0
    bundled = registry.list_models()[0]
    code, events = run_json("models", "uninstall", bundled.id)
    assert code == 2 and events[-1]["kind"] == "model-not-found" and "never removed" in events[-1]["message"]
    assert bundled.path.is_file()
    code, events = run_json("models", "uninstall", f"{MODEL_ID}@0.1.0")
    assert code == 0 and events[-1]["status"] == "uninstalled" and events[-1]["model"]["id"] == MODEL_ID
    assert_nothing_installed(store)
    code, stdout, stderr = run("models", "uninstall", MODEL_ID)
    assert code == 2 and f"No model '{MODEL_ID}' is installed" in stderr


def test_api_errors_are_the_projects_classes(server, store, model_folder):
    url, digest = serve(server, zip_bytes(model_folder))
    with pytest.raises(InstallError):
        model_install.install_model(url, "f" * 64)
    card = json.loads((model_folder / "model.json").read_text())
    card["weights"]["sha256"] = "1" * 64
    (model_folder / "model.json").write_text(json.dumps(card))
    url, digest = serve(server, zip_bytes(model_folder), "/bad-weights.zip")
    with pytest.raises(WeightsError):
        model_install.install_model(url, digest)
    card["version"] = 7
    (model_folder / "model.json").write_text(json.dumps(card))
    url, digest = serve(server, zip_bytes(model_folder), "/bad-card.zip")
    with pytest.raises(CardError):
        model_install.install_model(url, digest)
    assert_nothing_installed(store)


# ------------------------------------------------------------------------------------------- where the store is


def test_store_location_follows_platformdirs_and_the_override(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv(registry.HOME_ENV_VAR, raising=False)
    expected = Path(platformdirs.user_data_dir("MedGANTranslate", appauthor=False))
    assert registry.model_store() == expected / "models"
    assert registry._fallback_user_data_dir() == expected, "the answer without platformdirs (Slicer) is the same"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert registry._fallback_user_data_dir() == Path(platformdirs.user_data_dir("MedGANTranslate", appauthor=False))
    monkeypatch.setenv(registry.HOME_ENV_VAR, str(tmp_path / "home"))
    assert registry.model_store() == tmp_path / "home" / "models"
    assert registry.search_dirs()[-1] == tmp_path / "home" / "models"
