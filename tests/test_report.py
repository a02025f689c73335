"""The QA report (``run --report FILE.html``): one self-contained HTML page with the model, the warnings, the
pictures, the histogram's tissue shares, the metrics (only with a reference) and the uncertainty; escaped,
atomic with the other outputs, refused unless .html."""
from __future__ import annotations

import base64
import html
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from cli_in_process import process_settings_kept, run
from volumes import head_volume, write
from MedGANTranslateLib import file_translation, pipeline
from MedGANTranslateLib.errors import Cancelled, InputError, OutputError
from MedGANTranslateLib.progress import CancelToken
from MedGANTranslateLib.report import (
    PICTURE_SIDE,
    ReportInput,
    ReportOptions,
    check_report_path,
    histogram,
    make_report,
    png_bytes,
    tissue_shares,
)
from MedGANTranslateLib.run_options import RunOptions

GRID = dict(size=(20, 22, 18), spacing=(1.1, 0.9, 1.4))
WHEN = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)


@pytest.fixture
def model(make_model):
    return make_model()


@pytest.fixture
def mr(tmp_path) -> str:
    return write(head_volume(**GRID), tmp_path / "t1.nrrd")


@pytest.fixture
def ct(tmp_path) -> str:
    """A CT-like head: as an input to the MR model it draws the modality warning; as a reference, metrics."""
    return write(sitk.Cast(head_volume(**GRID), sitk.sitkInt16) - 1000, tmp_path / "ct.nrrd")


def translate(model, inputs, out_dir: Path, strict: bool = False, **kwargs):
    return file_translation.translate_files(str(model.folder), inputs, str(out_dir / "sct.nrrd"),
                                            options=RunOptions(device="cpu", threads=1, strict=strict), **kwargs)


def images_of(page: str):
    """Every <img>'s source, decoded: PNG images (PIL refuses anything else)."""
    sources = re.findall(r"<img[^>]*\ssrc='([^']*)'", page)
    decoded = []
    for source in sources:
        assert source.startswith("data:image/png;base64,"), source[:60]
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1], validate=True)))
        assert image.format == "PNG"
        image.load()
        decoded.append(image)
    return decoded


def without_pictures(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]*", "data:", page)


def shares_in(page: str):
    table = re.search(r"<table class='grid shares'>(.*?)</table>", page).group(1)
    rows = re.findall(r"</span>([^<]+)</td><td>[^<]*</td><td class='share'>([0-9.]+) %</td>", table)
    return {html.unescape(name): float(share) for name, share in rows}


def test_the_report_is_one_self_contained_page_with_the_model_warnings_and_pictures(model, ct, tmp_path):
    path = tmp_path / "qa.html"
    result = translate(model, [ct], tmp_path, report=str(path))
    page = path.read_text(encoding="utf-8")
    assert result.outputs["report"] == str(path)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing fetched: no script, stylesheet, font or frame; no address of any kind; every image inline
    for forbidden in ("<script", "<link", "<iframe", "<object", "<embed", "url(", "@import", "http:", "https:",
                      "file:", "href="):
        assert forbidden not in page.lower(), forbidden
    assert all(source.startswith("data:") for source in re.findall(r"src='([^']*)'", page))
    # input | synthetic, three planes each, and their colour bars (no difference map without a reference)
    pictures = images_of(page)
    assert len(pictures) == 2 * 3 + 2
    assert all(max(p.size) == PICTURE_SIDE for p in pictures)
    # the banner, the model and the engine's warning about this input (a CT given to an MR model)
    card = model
    assert "SYNTHETIC CT — research use only" in page
    for text in (card.id, f"<td>{card.version}</td>", card.sha256, html.escape(card.intended_use),
                 "[modality_mismatch]", "Hounsfield units", "Checks that could not run:", "skull_stripped"):
        assert text in page, text
    assert f"{result.report.device}" in page and result.report.precision in page


def test_histogram_shares_add_up_and_match_the_synthetic_values(model, mr, ct, tmp_path):
    path = tmp_path / "qa.html"
    result = translate(model, [mr], tmp_path, reference=ct, report=str(path))
    shares = shares_in(path.read_text(encoding="utf-8"))
    body = sitk.GetArrayFromImage(result.body_mask) > 0
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "sct.nrrd"))).astype(float)[body]
    expected = {"air": np.mean(values < -200), "soft tissue": np.mean((values >= -200) & (values < 250)),
                "bone": np.mean(values >= 250)}
    assert set(shares) == set(expected) and min(expected.values()) > 0, "the phantom's output has every class"
    for name, share in expected.items():
        assert shares[name] == pytest.approx(100 * share, abs=0.051), name
    assert sum(shares.values()) == pytest.approx(100, abs=0.15)


def test_tissue_classes_and_bins_at_their_limits():
    """The classes are the metrics' (SynthRAD): air < -200 <= soft tissue < 250 <= bone; every value in one bin."""
    values = np.array([-1024, -201, -200, -199, 0, 249, 250, 251, 3071], dtype=float)
    assert tissue_shares(values) == pytest.approx({"air": 200 / 9, "soft tissue": 400 / 9, "bone": 300 / 9})
    counts, first, width = histogram(values, ct=True)
    assert counts.sum() == values.size and width in (25.0, 50.0) and first % width == 0
    assert -200 % width == 0 and 250 % width == 0, "class limits fall on bin edges"
    for value in values:
        index = int((value - first) // width)
        assert first + index * width <= value < first + (index + 1) * width and counts[index] > 0
    counts, first, width = histogram(np.linspace(0, 7.3, 1000), ct=False)
    assert counts.sum() == 1000 and len(counts) <= 200 and width == pytest.approx(0.05)


def test_metrics_only_with_a_reference(model, mr, ct, tmp_path):
    without = tmp_path / "without.html"
    translate(model, [mr], tmp_path, report=str(without))
    page = without.read_text(encoding="utf-8")
    assert "Metrics against the reference" not in page and "MAE" not in without_pictures(page)
    assert len(images_of(page)) == 8

    (tmp_path / "with").mkdir()
    with_reference = tmp_path / "with" / "qa.html"
    result = translate(model, [mr], tmp_path / "with", reference=ct, diff=str(tmp_path / "with" / "d.nrrd"),
                       report=str(with_reference))
    page = with_reference.read_text(encoding="utf-8")
    assert "<h2>Metrics against the reference</h2>" in page
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td class='metric'>([^<]*)</td></tr>", page))
    assert rows["MAE (mean absolute error)"] == f"{result.metrics['mae']:.4g} HU"
    assert rows["SSIM"].strip() == f"{result.metrics['ssim']:.4g}"
    assert "difference (synthetic - reference)" in page and len(images_of(page)) == 12
    assert html.escape(ct) in page, "the reference is listed with the inputs"


def test_hostile_names_are_escaped(model, tmp_path):
    hostile = "<img src=x onerror=alert(1)>&'\".nrrd"
    path = write(head_volume(**GRID), tmp_path / hostile)
    report = tmp_path / "qa.html"
    translate(model, [path], tmp_path, report=str(report))
    page = report.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert html.escape(path, quote=True) in page
    # names given for the report (the Slicer panel gives node names) are escaped too
    report.unlink()
    translate(model, [path], tmp_path, report=str(report),
              report_options=ReportOptions(input_names=["</td><script>x()</script>"]))
    page = report.read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;/td&gt;&lt;script&gt;x()&lt;/script&gt;" in page


def _left_overs(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial") or p.suffix in (".html", ".json"))


def test_a_failing_translation_leaves_no_report(model, mr, ct, tmp_path, monkeypatch):
    report = tmp_path / "qa.html"
    # refused (strict mode, a CT given to an MR model): nothing written, an earlier report kept as it was
    report.write_text("earlier report")
    with pytest.raises(InputError, match="strict mode"):
        translate(model, [ct], tmp_path, report=str(report), strict=True)
    assert report.read_text() == "earlier report" and not (tmp_path / "sct.nrrd").exists()
    report.unlink()
    # the report cannot be made: neither it nor the synthetic image appears (one transaction)
    def fail(*args, **kwargs):
        raise OutputError("no report")

    monkeypatch.setattr(file_translation, "make_report", fail)
    with pytest.raises(OutputError, match="no report"):
        translate(model, [mr], tmp_path, report=str(report))
    assert not report.exists() and not (tmp_path / "sct.nrrd").exists() and _left_overs(tmp_path) == []
    monkeypatch.undo()
    # cancelled while the report is made: the staged outputs are removed
    token = CancelToken()
    real = file_translation.make_report

    def make_then_cancel(*args, **kwargs):
        page = real(*args, **kwargs)
        token.cancel()
        return page

    monkeypatch.setattr(file_translation, "make_report", make_then_cancel)
    with pytest.raises(Cancelled):
        translate(model, [mr], tmp_path, report=str(report), cancel=token)
    assert not report.exists() and not (tmp_path / "sct.nrrd").exists() and _left_overs(tmp_path) == []


def test_report_path_and_options_are_checked_before_any_work(model, mr, tmp_path):
    with pytest.raises(OutputError, match=r"must be an \.html file.*qa\.html"):
        check_report_path(tmp_path / "qa.pdf")
    assert check_report_path("QA.HTML").name == "QA.HTML"
    with process_settings_kept():
        code, _, err = run("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "s.nrrd", "--report",
                           tmp_path / "qa.txt", "--progress", "none")
        assert code == 2 and "must be an .html file" in err
        code, _, err = run("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "s.nrrd",
                           "--report-uncertainty-threshold", "50", "--progress", "none")
        assert code == 2 and "add --report FILE.html" in err
        code, _, err = run("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "s.nrrd", "--report",
                           tmp_path / "qa.html", "--report-input-name", "a", "--report-input-name", "b",
                           "--progress", "none")
        assert code == 2 and "1 input(s) but 2 name(s)" in err
        code, _, err = run("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "s.nrrd", "--report",
                           tmp_path / "missing" / "qa.html", "--progress", "none")
        assert code == 2 and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "t1.nrrd"]


def test_cli_writes_the_report_with_the_other_outputs(model, mr, ct, tmp_path):
    report = tmp_path / "qa.html"
    with process_settings_kept():
        code, out, err = run("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "s.nrrd", "--reference", ct,
                             "--metrics", tmp_path / "m.json", "--report", report, "--report-input-name=-MR head",
                             "--report-reference-name", "CT head", "--device", "cpu", "--progress", "json")
        assert code == 0, err
        done = json.loads(out.splitlines()[-1])
        assert done["event"] == "done" and done["outputs"]["report"] == str(report)
        page = report.read_text(encoding="utf-8")
        assert "<td class='name'>-MR head</td>" in page and "<td class='name'>CT head</td>" in page
        code, out, err = run("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "s2.nrrd", "--report",
                             tmp_path / "qa2.html", "--device", "cpu", "--progress", "none")
        assert code == 0, err
        assert f"QA report written to {tmp_path / 'qa2.html'}" in out


def _result_with_uncertainty(model, tmp_path):
    image = head_volume(**GRID)
    result = pipeline.Translator(model, RunOptions(device="cpu")).translate([image])
    body = sitk.GetArrayFromImage(result.body_mask) > 0
    ramp = np.broadcast_to(np.linspace(0, 300, body.shape[2], dtype=np.float32), body.shape).copy()
    uncertainty = sitk.GetImageFromArray(ramp)
    uncertainty.CopyInformation(result.synthetic)
    result.uncertainty = uncertainty  # as the pipeline gives it: float32 on the input grid, in HU
    return image, result, ramp[body]


def test_uncertainty_column_and_share_above_the_threshold(model, tmp_path):
    image, result, inside = _result_with_uncertainty(model, tmp_path)
    inputs = [ReportInput("t1.nrrd", "input 't1' (MR T1w)", image)]
    page = make_report(model, result, inputs, created=WHEN)
    assert "uncertainty" in re.search(r"<table class='planes'[^>]*><tr>(.*?)</tr>", page).group(1)
    assert len(images_of(page)) == 3 * 4  # input | synthetic | uncertainty, and a colour bar each
    share = float(re.search(r"<b>([0-9.]+) %</b> of the body has an uncertainty above 100 HU", page).group(1))
    assert share == pytest.approx(100 * np.mean(inside > 100), abs=0.051)
    page = make_report(model, result, inputs, options=ReportOptions(uncertainty_threshold=250), created=WHEN)
    share = float(re.search(r"<b>([0-9.]+) %</b> of the body has an uncertainty above 250 HU", page).group(1))
    assert share == pytest.approx(100 * np.mean(inside > 250), abs=0.051)
    result.uncertainty = None
    assert "Uncertainty</h2>" not in make_report(model, result, inputs, created=WHEN)


def test_the_page_depends_only_on_its_arguments_and_the_planes_are_radiological(model, tmp_path):
    """The same page twice (the date given); stored right-to-left (RAS), a bright spot on the patient's left is
    drawn on the picture's right, as radiology shows an axial slice."""
    image = head_volume(size=(24, 24, 12), direction=np.diag([-1.0, -1.0, 1.0]))
    values = sitk.GetArrayFromImage(image)
    values[:, 10:14, 1:4] = 5000.0  # low i: the patient's left, since i runs to the right (R) here
    marked = sitk.GetImageFromArray(values)
    marked.CopyInformation(image)
    result = pipeline.Translator(model, RunOptions(device="cpu")).translate([marked])
    inputs = [ReportInput("t1.nrrd", "input 't1' (MR T1w)", marked)]
    page = make_report(model, result, inputs, created=WHEN)
    assert page == make_report(model, result, inputs, created=WHEN)
    axial = np.asarray(images_of(page)[0], dtype=float)
    columns = axial.max(axis=0)
    assert columns[-PICTURE_SIDE // 8:].max() == 255 and columns[:PICTURE_SIDE // 2].max() < 255


def test_png_encoder_round_trips_grey_and_colour():
    rng = np.random.default_rng(0)
    for pixels in (rng.integers(0, 256, (7, 5), dtype=np.uint8), rng.integers(0, 256, (4, 9, 3), dtype=np.uint8)):
        decoded = np.asarray(Image.open(io.BytesIO(png_bytes(pixels))))
        np.testing.assert_array_equal(decoded, pixels)


def test_a_run_with_an_uncertainty_map_reports_it(model, mr, tmp_path):
    """The engine's own uncertainty map (--uncertainty) reaches the report: its column, the share above the
    threshold computed from the map that was written, and the variants it is the spread of."""
    report = tmp_path / "qa.html"
    with process_settings_kept():
        code, _, err = run("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "s.nrrd", "--uncertainty",
                           tmp_path / "u.nrrd", "--report", report, "--report-uncertainty-threshold", "200",
                           "--device", "cpu", "--progress", "none")
    assert code == 0, err
    page = report.read_text(encoding="utf-8")
    assert len(images_of(page)) == 3 * 4  # input | synthetic | uncertainty: three planes and a colour bar each
    uncertainty = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "u.nrrd")))
    body = uncertainty[sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "s.nrrd"))) != -1000]  # background
    share = float(re.search(r"<b>([0-9.]+) %</b> of the body has an uncertainty above 200 HU", page).group(1))
    assert 10 < share < 90 and share == pytest.approx(100 * np.mean(body > 200), abs=0.051)
    assert "Uncertainty: std over" in page
