"""The web face's server over real HTTP (``medgan-translate serve`` in its own process): the security model
(loopback Host check, token off loopback, request header, data-root confinement, registered models only, upload
limits and checks, one job per session, sessions that see nothing of each other) and a whole translation through
the API with its downloads. The browser tests are in test_web_browser.py."""
from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from web_server import Client, needs_web_face, running_server, write_phantom

pytestmark = pytest.mark.slow
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    needs_web_face()
    root = tmp_path_factory.mktemp("data-root")
    write_phantom(root / "phantom", names=("t1", "t2", "ct"))
    secret = root.parent / "secret.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(root / "phantom" / "t1.nii.gz")), str(secret))
    (root / "link-out.nii.gz").symlink_to(secret)
    return root


@pytest.fixture(scope="module")
def server(data_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    with running_server(["--data-root", str(data_root), "--work-dir", str(work), "--max-upload-mb", "5",
                         "--max-sessions", "16"]) as url:
        yield url, work


@pytest.fixture
def new_client(server):
    """A new browser session on the module's server; closed afterwards (its process ended, its files removed)."""
    made = []

    def new() -> Client:
        made.append(Client(server[0]))
        return made[-1]

    yield new
    for session in made:
        assert session.post("/api/close")[0] == 200


def _wait_done(client: Client) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        status, state = client.get("/api/state")
        assert status == 200, state
        if not state["running"]:
            return state
        assert time.monotonic() < deadline, "the translation did not end in time"
        time.sleep(0.3)


def test_loopback_server_refuses_other_host_names_and_cross_site_posts(server, new_client):
    client = new_client()
    status, body = client.get("/api/files", headers={"Host": "attacker.example:80"})
    assert status == 421 and "loopback" in body["error"]
    status, body = client.post("/api/load", {"role": "input", "path": "phantom/t1.nii.gz"}, header=False)
    assert status == 403 and "X-MedGAN-Request" in body["error"]
    status, body = client.get("/api/state")
    assert status == 200 and body["volumes"] == {}, "a refused POST must not have loaded anything"


def test_only_files_under_the_data_root_can_be_listed_or_opened(server, data_root, new_client):
    client = new_client()
    status, listing = client.get("/api/files")
    assert status == 200
    assert [f["path"] for f in listing["files"]] == ["phantom/ct.nii.gz", "phantom/t1.nii.gz", "phantom/t2.nii.gz"], \
        "the link leading out of the data root must not be listed"
    for path in ("../secret.nii.gz", str(data_root.parent / "secret.nii.gz"), "link-out.nii.gz",
                 "phantom/../../secret.nii.gz", "/etc/passwd", "C:\\Windows\\win.ini"):
        status, body = client.post("/api/load", {"role": "input", "path": path})
        assert status == 403, (path, body)
        assert "data root" in body["error"]
    status, body = client.post("/api/load", {"role": "input", "path": "phantom/missing.nii.gz"})
    assert status == 404 and "does not exist" in body["error"]
    assert client.get("/api/state")[1]["volumes"] == {}


def test_the_browser_can_choose_only_registered_models(server, new_client):
    client = new_client()
    status, models = client.get("/api/models")
    assert status == 200 and any(m["default"] for m in models)
    assert all("@" in m["key"] and "intended_use" in m for m in models)
    assert client.post("/api/load", {"role": "input", "path": "phantom/t1.nii.gz"})[0] == 200
    for named in ("/etc", "models/mr-t1-to-ct-pix2pix", "http://127.0.0.1:1/model.zip", "mr-t1-to-ct-pix2pix@0.0.1"):
        status, body = client.post("/api/translate", {"model": named})
        assert status == 400 and "not a registered model" in body["error"], named
    assert not client.get("/api/state")[1]["running"]


def test_uploads_are_limited_checked_and_never_kept_when_refused(server, new_client):
    _, work = server
    client = new_client()
    status, body = client.upload("input", "big.nii.gz", b"\0" * (5 << 20 | 1))
    assert status == 413 and "larger than 5 MB" in body["error"]
    status, body = client.upload("input", "notes.txt", b"hello")
    assert status == 400 and "not a scan this server reads" in body["error"]
    status, body = client.upload("input", "broken.nii.gz", b"this is not gzip")
    assert status == 400 and "input" in body["error"]
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../../escape.dcm", b"x")
    status, body = client.upload("input", "series.zip", evil.getvalue())
    assert status == 400 and "not a plain file inside the zip" in body["error"]
    assert not list(work.rglob("escape.dcm")) and not (work.parent / "escape.dcm").exists()
    assert not [p for p in work.rglob("uploads/*") if p.is_file()], "refused uploads must not stay on disk"
    assert client.get("/api/state")[1]["volumes"] == {}


def test_a_zipped_dicom_series_can_be_uploaded_again_and_again(server, data_root, tmp_path, new_client):
    """The web face reads a DICOM series zip with the engine's reader, into a folder of its own each time."""
    from MedGANTranslateLib.image_writing import write_image

    series = tmp_path / "series"
    write_image(sitk.ReadImage(str(data_root / "phantom" / "t1.nii.gz")), series, {"MedGANTranslate.Test": "1"})
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        for member in sorted(series.iterdir()):
            archive.write(member, f"series/{member.name}")
    client = new_client()
    for name in ("first.zip", "second.zip", "third.zip"):
        status, state = client.upload("input", name, bundle.getvalue())
        assert status == 200, state
        assert state["volumes"] == {"input": name[:-4]}


def test_upload_translate_review_and_download(server, data_root, tmp_path, new_client):
    """The whole run through the API: an uploaded scan, the default model, views, metrics and every download
    (provenance kept, on the input's grid); a second job while one runs is refused; another session sees none
    of it."""
    url, _ = server
    client, other = new_client(), new_client()
    status, state = client.upload("input", "t1.nii.gz", (data_root / "phantom" / "t1.nii.gz").read_bytes())
    assert status == 200 and state["volumes"] == {"input": "t1"}
    assert client.post("/api/load", {"role": "reference", "path": "phantom/ct.nii.gz"})[0] == 200
    model = next(m["key"] for m in client.get("/api/models")[1] if m["default"])
    status, state = client.post("/api/translate", {"model": model})
    assert status == 200 and state["running"]
    status, body = client.post("/api/translate", {"model": model})
    assert status == 409 and "running" in body["error"]
    state = _wait_done(client)
    assert state["error"] is None and state["result"], state
    result = state["result"]
    assert result["provenance"]["MedGANTranslate.Synthetic"] == "true"
    assert result["provenance"]["MedGANTranslate.ModelId"] == model.split("@")[0]
    assert result["name"] == f"t1 · synthetic CT ({model.split('@')[0]} v{model.split('@')[1]})"
    assert {"synthetic.nii.gz", "difference.nii.gz", "synthetic-dicom.zip", "report.html", "metrics.json"} <= set(result["downloads"])
    assert any(row[0] == "mae" for row in state["metrics"]), state["metrics"]
    assert [p["pane"] for p in state["view"]["panes"]] == ["Red", "Yellow", "Green"]

    status, png = client.get("/api/view/Yellow.png?w=200&h=240")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    status, bar = client.get("/api/colorbar/Green")
    assert status == 200 and bar["min"] == -bar["max"] and bar["colors"][0] != bar["colors"][-1]

    status, body, headers = client.request("/api/download/synthetic.nii.gz")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    (tmp_path / "synthetic.nii.gz").write_bytes(body)
    synthetic = sitk.ReadImage(str(tmp_path / "synthetic.nii.gz"))
    source = sitk.ReadImage(str(data_root / "phantom" / "t1.nii.gz"))
    assert synthetic.GetSize() == source.GetSize()
    assert np.allclose(synthetic.GetOrigin(), source.GetOrigin()) and np.allclose(synthetic.GetSpacing(), source.GetSpacing())
    assert "synthetic" in synthetic.GetMetaData("descrip").lower()
    status, body, _ = client.request("/api/download/synthetic-dicom.zip")
    with zipfile.ZipFile(io.BytesIO(body)) as bundle:
        names = bundle.namelist()
        assert len(names) == source.GetSize()[2]
        bundle.extractall(tmp_path / "dicom")
    series = sitk.ReadImage(sorted(str(p) for p in (tmp_path / "dicom" / "synthetic-ct").iterdir()))
    assert series.GetSize() == source.GetSize()
    status, body, _ = client.request("/api/download/metrics.json")
    assert status == 200 and "mae" in json.loads(body)
    status, body, _ = client.request("/api/download/report.html")
    assert status == 200 and b"SYNTHETIC" in body.upper()

    assert other.get("/api/state")[1]["volumes"] == {} and other.get("/api/state")[1]["result"] is None
    assert other.request("/api/download/report.html")[0] == 404
    assert client.request("/api/download/../../etc/passwd")[0] == 404


def test_a_two_input_model_takes_its_second_input_as_input2(server, new_client):
    client = new_client()
    model = next(m for m in client.get("/api/models")[1] if len(m["inputs"]) == 2)
    assert client.post("/api/load", {"role": "input", "path": "phantom/t1.nii.gz"})[0] == 200
    status, body = client.post("/api/translate", {"model": model["key"]})
    assert status == 400 and f"open {model['inputs'][1]} (input 2) first" in body["error"]
    assert client.post("/api/load", {"role": "input2", "path": "phantom/t2.nii.gz"})[0] == 200
    assert client.post("/api/load", {"role": "input9", "path": "phantom/t2.nii.gz"})[0] == 400
    assert client.post("/api/translate", {"model": model["key"]})[0] == 200
    state = _wait_done(client)
    assert state["error"] is None and state["result"]["name"].startswith("t1 · synthetic PET"), state
    assert state["result"]["provenance"]["MedGANTranslate.ModelId"] == model["key"].split("@")[0]
    pet = client.request("/api/download/synthetic.nii.gz")[1]
    ct_model = next(m for m in client.get("/api/models")[1] if m["default"])
    assert client.post("/api/translate", {"model": ct_model["key"]})[0] == 200
    assert _wait_done(client)["error"] is None
    ct = client.request("/api/download/synthetic.nii.gz")[1]
    assert ct != pet, "a new result's download must not be the previous result's file"


def test_the_uncertainty_map_overlays_the_synthetic_pane_above_a_threshold_the_page_moves(server, new_client):
    client = new_client()
    model = next(m for m in client.get("/api/models")[1] if m["default"])
    assert model["uncertainty"]
    assert client.post("/api/load", {"role": "input", "path": "phantom/t1.nii.gz"})[0] == 200
    assert client.post("/api/translate", {"model": model["key"], "uncertainty": True})[0] == 200
    state = _wait_done(client)
    assert state["error"] is None and "uncertainty.nii.gz" in state["result"]["downloads"]
    slider = state["view"]["uncertainty"]
    assert 0 < slider["value"] < slider["max"] and slider["unit"] == "HU"
    assert state["view"]["panes"][1]["title"].endswith(" + t1 · uncertainty")
    status, state = client.post("/api/view", {"mode": "side", "third": "uncertainty", "opacity": 0.5,
                                              "threshold": slider["max"] / 2})
    assert status == 200 and state["view"]["uncertainty"]["value"] == pytest.approx(slider["max"] / 2)
    assert [p["title"] for p in state["view"]["panes"]][1:] == [state["result"]["name"], "t1 · uncertainty"]
    assert client.post("/api/view", {"mode": "side", "third": "uncertainty", "threshold": "high"})[0] == 400


def test_bias_field_correction_is_asked_per_translation_and_recorded(server, new_client):
    client = new_client()
    model = next(m for m in client.get("/api/models")[1] if m["default"])
    assert model["n4"], "the default model takes an MR input"
    assert client.post("/api/load", {"role": "input", "path": "phantom/t1.nii.gz"})[0] == 200
    assert client.post("/api/translate", {"model": model["key"], "n4": True})[0] == 200
    state = _wait_done(client)
    assert state["error"] is None and state["result"]["provenance"]["MedGANTranslate.BiasCorrection"] == "N4"
    assert client.post("/api/translate", {"model": model["key"]})[0] == 200
    state = _wait_done(client)
    assert state["error"] is None and "MedGANTranslate.BiasCorrection" not in state["result"]["provenance"]


def test_closing_a_session_ends_its_process_and_removes_its_files(server):
    _, work = server
    client = Client(server[0])
    earlier = set(work.iterdir())
    assert client.post("/api/load", {"role": "input", "path": "phantom/t1.nii.gz"})[0] == 200
    (folder,) = set(work.iterdir()) - earlier
    assert client.post("/api/close")[0] == 200
    assert not folder.exists()
    assert client.get("/api/state")[1]["volumes"] == {}, "the next request starts a new, empty session"
    assert client.post("/api/close")[0] == 200


def test_sessions_beyond_the_limit_are_refused(data_root):
    with running_server(["--data-root", str(data_root), "--max-sessions", "1"]) as url:
        first, second = Client(url), Client(url)
        assert first.get("/api/state")[0] == 200
        status, body = second.get("/api/state")
        assert status == 503 and "most it allows" in body["error"]
        assert first.get("/api/state")[0] == 200, "the open session goes on"


def test_other_interfaces_need_the_printed_token(data_root):
    with running_server(["--host", "0.0.0.0", "--data-root", str(data_root)]) as url:
        assert "?token=" in url
        token = url.split("?token=")[1]
        base = url.split("?")[0].replace("0.0.0.0", "127.0.0.1")
        anonymous = Client(base)
        status, body = anonymous.get("/api/files")
        assert status == 401 and "token" in body["error"]
        assert anonymous.get("/api/files", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert anonymous.get("/api/files", headers={"Authorization": f"Bearer {token}"})[0] == 200
        browser = Client(base)
        status, page, _ = browser.request(f"/?token={token}")
        assert status == 200 and b"MedGANTranslate" in page
        assert browser.get("/api/files")[0] == 200, "the token is kept in a cookie after the first visit"


def test_data_root_that_is_not_a_folder_is_refused(tmp_path):
    needs_web_face()
    with pytest.raises(AssertionError, match="not a folder"):
        with running_server(["--data-root", str(tmp_path / "missing")]):
            pass
