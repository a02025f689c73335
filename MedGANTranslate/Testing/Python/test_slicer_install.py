"""Installing a model from a URL through the panel (Advanced): the engine's ``models install`` in the real
background process, against a real HTTP server on 127.0.0.1; the install button, progress, Cancel, errors, and
the model list refreshed with the installed model selected."""
from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

TIMEOUT = 180
MODEL_ID = "tiny-remote"


@pytest.fixture(scope="module")
def model_zip(tmp_path_factory) -> bytes:
    import torch

    from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
    from MedGANTranslateLib.networks import build_network

    folder = tmp_path_factory.mktemp("remote") / MODEL_ID
    data = tiny_card_data(MODEL_ID)
    data["title"] = "Tiny remote test model"
    torch.manual_seed(0)
    save_model_folder(folder, data, network=build_network(data["architecture"]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{MODEL_ID}/{path.name}")
    return buffer.getvalue()


@pytest.fixture
def server(model_zip):
    """Serves the zip at /model.zip; at /stalls.zip it sends half of it, then nothing until the test ends."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path not in ("/model.zip", "/stalls.zip"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(model_zip)))
            self.end_headers()
            if self.path == "/stalls.zip":
                self.wfile.write(model_zip[: len(model_zip) // 2])
                self.wfile.flush()
                release.wait(60)
                return
            self.wfile.write(model_zip)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield f"http://{host}:{port}"
    release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_install_command_and_what_the_button_needs(slicer_standin):
    from MedGANTranslateSlicer.install import install_arguments, install_problems

    digest = "ab" * 32
    assert install_arguments(" https://x.org/m.zip ", digest + "\n") == [
        "models", "install", "https://x.org/m.zip", "--sha256", digest, "--progress", "json"]
    assert install_arguments("https://x.org/m.zip", digest, force=True)[-1] == "--force"
    assert install_problems("https://x.org/m.zip", digest.upper()) == []
    assert len(install_problems("", "")) == 2
    assert install_problems("ftp://x.org/m.zip", digest) == ["Give the http(s) URL of the model's zip."]
    assert "64 hexadecimal digits" in install_problems("https://x.org/m.zip", "abc")[0]


def test_install_button_is_enabled_by_a_url_and_a_sha256(widget):
    ui = widget.ui
    assert not ui.installModelButton.enabled and "http(s) URL" in ui.installModelButton.toolTip
    ui.installUrlLineEdit.text = "https://example.org/model.zip"
    assert not ui.installModelButton.enabled and "SHA-256" in ui.installModelButton.toolTip
    ui.installSha256LineEdit.text = "0" * 64
    assert ui.installModelButton.enabled


def _start_install(slicer, widget, url: str, sha256: str):
    widget.ui.installUrlLineEdit.text = url
    widget.ui.installSha256LineEdit.text = sha256
    widget.ui.installModelButton.click()
    job = widget.panel._job
    assert job is not None and job.running
    assert widget.ui.applyButton.text == "Cancel" and widget.ui.applyButton.enabled
    assert not widget.ui.installModelButton.enabled and not widget.ui.advancedCollapsibleButton.enabled
    assert widget.ui.progressBar.visible
    return job


@pytest.mark.slow
def test_installed_model_appears_selected_in_the_panel(slicer_standin, widget, store, server, model_zip):
    slicer = slicer_standin
    progress = []
    original = widget.panel._onProgress

    def record(tracker):
        progress.append((tracker.stage, tracker.percent))
        original(tracker)

    widget.panel._onProgress = record
    job = _start_install(slicer, widget, server + "/model.zip", hashlib.sha256(model_zip).hexdigest())
    assert slicer._standin.process_events_until(lambda: not job.running, TIMEOUT)
    assert job.error is None, job.error and job.error.log
    assert job.status == "installed" and job.model["id"] == MODEL_ID
    assert Path(job.model["folder"]) == (store / f"{MODEL_ID}-0.1.0").resolve()
    assert [stage for stage, _ in progress if stage] and progress[-1] == ("check", 100)
    assert [p for _, p in progress] == sorted(p for _, p in progress), "the bar never goes back"
    assert widget.ui.modelSelector.currentData() == f"{MODEL_ID}@0.1.0"
    assert widget.panel._parameterNode.modelKey == f"{MODEL_ID}@0.1.0"
    status = widget.ui.statusLabel.text
    assert status.startswith("Installed: Tiny remote test model (tiny-remote v0.1.0).")
    assert "Licence: Apache-2.0." in status and "Intended use: Research use only" in status
    assert widget.ui.applyButton.text == "Translate" and not widget.ui.progressBar.visible
    assert widget.ui.installUrlLineEdit.text == "" and widget.ui.advancedCollapsibleButton.enabled
    assert slicer._standin.dialogs("error") == []


@pytest.mark.slow
def test_a_wrong_sha256_is_shown_as_an_error_and_installs_nothing(slicer_standin, widget, store, server, model_zip):
    slicer = slicer_standin
    job = _start_install(slicer, widget, server + "/model.zip", "0" * 64)
    assert slicer._standin.process_events_until(lambda: not job.running, TIMEOUT)
    assert job.error is not None and job.error.kind == "install" and job.error.title == "The model cannot be installed"
    (shown,) = slicer._standin.dialogs("error")
    assert "0" * 64 in shown["text"] and hashlib.sha256(model_zip).hexdigest() in shown["text"]
    assert sorted(p.name for p in store.iterdir()) == [".downloads", ".staging"]
    assert MODEL_ID not in [widget.ui.modelSelector.itemData(i) for i in range(widget.ui.modelSelector.count)]


@pytest.mark.slow
def test_cancel_stops_the_download_and_installs_nothing(slicer_standin, widget, store, server, model_zip):
    slicer = slicer_standin
    job = _start_install(slicer, widget, server + "/stalls.zip", hashlib.sha256(model_zip).hexdigest())
    part = store / ".downloads" / f"{hashlib.sha256(model_zip).hexdigest()}.part"
    assert slicer._standin.process_events_until(lambda: part.is_file() and part.stat().st_size > 0, TIMEOUT)
    widget.ui.applyButton.click()
    assert job.cancelled and not job.running
    assert widget.ui.statusLabel.text == "Install cancelled. Nothing was installed."
    assert widget.ui.applyButton.text == "Translate" and not widget.ui.progressBar.visible
    assert [p.name for p in store.iterdir() if not p.name.startswith(".")] == []
    assert slicer._standin.dialogs("error") == []
