"""The web face in a real browser: Debian's chromium driven by Playwright (no browser download), against
``medgan-translate serve`` in its own process. A phantom head is opened from the data root and translated by
clicking; the synthetic CT view, rendered by the session's Slicer slice view, must show bright bone where the
phantom's real CT (opened as reference, shown in the linked third pane) has bone. Cancelling leaves nothing; a
path outside the data root and a missing token are refused. ``.ci/run`` installs chromium where it is missing."""
from __future__ import annotations

import io
import shutil
import time

import numpy as np
import pytest

from web_server import needs_web_face, running_server, write_phantom

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 240_000
#: Flags for a root user on a closed network (no sandbox; nothing phoning home to stall on refused connections).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]
PANES_LOADED = """(panes) => panes.every(p => { const i = document.getElementById('view-' + p);
                                             return i && i.complete && i.naturalWidth > 0; })"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    return found


@pytest.fixture(scope="module")
def browser():
    needs_web_face()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    needs_web_face()
    root = tmp_path_factory.mktemp("data-root")
    write_phantom(root / "phantom", shape=(192, 224, 192), spacing=(1.0, 1.0, 1.0))
    (root.parent / "outside.nii.gz").write_bytes((root / "phantom" / "t1.nii.gz").read_bytes())
    return root


@pytest.fixture(scope="module")
def server(data_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    with running_server(["--data-root", str(data_root), "--work-dir", str(work)]) as url:
        yield url, work


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 800})  # a browser session of its own
    yield context.new_page()
    context.close()


def _open(page, path: str, role: str) -> None:
    page.select_option("#file-select", path)
    page.click(f"#load-{role}")
    page.wait_for_selector(f"#volume-{role}")


def _grey(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def _leftovers(session) -> list:
    """What a run leaves in its session's folder: the job's temporary folder, kept results."""
    return [p for p in session.rglob("*") if p.name.startswith("MedGANTranslate-") or p.parent.name == "results"]


def test_translate_by_clicking_shows_bone_where_the_phantom_has_bone(server, page):
    url, _ = server
    page.goto(url)
    page.wait_for_selector("#file-select option", state="attached")
    _open(page, "phantom/t1.nii.gz", "input")
    _open(page, "phantom/ct.nii.gz", "reference")
    assert "Research use only" in page.inner_text("#model-details")
    assert page.is_enabled("#n4"), "the default model takes an MR input, so N4 can be asked for"
    page.check("#n4")
    page.click("#translate")
    page.wait_for_selector("#cancel", state="visible")
    page.wait_for_selector("#review", state="visible", timeout=RUN_TIMEOUT_MS)
    assert page.inner_text("#status").startswith("Done: t1 · synthetic CT")
    provenance = page.evaluate("fetch('/api/state').then(r => r.json()).then(s => s.result.provenance)")
    assert provenance["MedGANTranslate.BiasCorrection"] == "N4"
    assert page.locator("#metrics tr").count() > 3
    assert page.locator("#downloads a", has_text="synthetic-dicom.zip").count() == 1
    page.select_option("#third-select", "reference")
    page.wait_for_selector("#view-Green[alt='ct']")
    page.wait_for_function(PANES_LOADED, arg=["Red", "Yellow", "Green"])
    synthetic = _grey(page.locator("#view-Yellow").screenshot())
    reference = _grey(page.locator("#view-Green").screenshot())
    assert synthetic.shape == reference.shape
    # Both panes have the card's CT window (-450 to 1050 HU): grey 255 * (HU + 450) / 1500
    bone = reference > 200  # above ~730 HU in the phantom's real CT: its skull
    soft = (reference > 40) & (reference < 110)  # about -200 to 200 HU: brain, scalp
    assert bone.sum() > 500 and soft.sum() > 2 * bone.sum(), "the reference pane shows no head"
    bright = synthetic > 200
    dice = 2 * (bright & bone).sum() / (bright.sum() + bone.sum())
    assert synthetic[bone].mean() > synthetic[soft].mean() + 80, "the synthetic CT is not brighter where the phantom has bone"
    assert dice > 0.5, f"bright bone in the synthetic view overlaps the phantom's bone poorly (Dice {dice:.2f})"


def test_cancel_in_the_browser_leaves_nothing(server, page):
    url, work = server
    earlier = set(work.iterdir())
    page.goto(url)
    page.wait_for_selector("#file-select option", state="attached")
    _open(page, "phantom/t1.nii.gz", "input")
    (session,) = set(work.iterdir()) - earlier  # this browser session's folder
    page.click("#translate")
    page.wait_for_selector("#cancel", state="visible")
    page.click("#cancel")
    page.wait_for_selector("#translate", state="visible")
    assert page.inner_text("#status") == "Cancelled. Nothing was added to the scene."
    assert page.locator("#review").is_hidden()
    deadline = time.monotonic() + 30
    while _leftovers(session) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _leftovers(session) == [], "a cancelled run left files behind"
    assert page.evaluate("fetch('/api/state').then(r => r.json()).then(s => [s.running, s.result])") == [False, None]


def test_a_path_outside_the_data_root_is_refused_in_the_browser(server, page):
    url, _ = server
    page.goto(url)
    answer = page.evaluate("""() => fetch('/api/load', {method: 'POST', headers: {'X-MedGAN-Request': '1',
        'Content-Type': 'application/json'}, body: JSON.stringify({role: 'input', path: '../outside.nii.gz'})})
        .then(async r => [r.status, (await r.json()).error])""")
    assert answer[0] == 403 and "outside the data root" in answer[1]
    page.reload()
    assert page.locator("#volumes dd").count() == 0


def test_a_missing_token_is_refused_in_the_browser(data_root, page):
    with running_server(["--host", "0.0.0.0", "--data-root", str(data_root)]) as url:
        base, token = url.split("?token=")
        base = base.replace("0.0.0.0", "127.0.0.1")
        response = page.goto(base)
        assert response.status == 401 and "access token" in page.inner_text("body")
        response = page.goto(f"{base}?token={token}")
        assert response.status == 200 and "token=" not in page.url, "the token must leave the address bar"
        page.wait_for_selector("#model-select option", state="attached")
        assert page.locator("#model-select option").count() >= 1
