"""Memory estimates: the quick bound refuses nothing on its own, and the traced estimate is close to the peak
resident memory a real translation reaches."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from MedGANTranslateLib.card import load_card
from MedGANTranslateLib.errors import ResourceError
from MedGANTranslateLib.file_translation import traced_job_bytes
from MedGANTranslateLib.image_headers import read_header
from MedGANTranslateLib.inference_settings import estimate_window_bytes
from MedGANTranslateLib.phantom import make_phantom
from MedGANTranslateLib.pipeline import inference_settings
from MedGANTranslateLib.resources import check_fits, estimate_job_bytes

GB = 2 ** 30
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "mr-t1-to-ct-pix2pix"


def test_the_precise_figure_decides_only_when_the_bound_would_refuse():
    calls = []

    def refine(value):
        def call():
            calls.append(value)
            return value
        return call

    check_fits(2 * GB, "job", available=4 * GB, refine=refine(1 * GB))
    assert calls == [], "a job the bound lets through is not traced"
    check_fits(8 * GB, "job", available=4 * GB, refine=refine(3 * GB))
    assert calls == [3 * GB]
    with pytest.raises(ResourceError, match=r"needs about 5\.0 GB of memory but only 4\.0 GB"):
        check_fits(8 * GB, "job", available=4 * GB, refine=refine(5 * GB))


_CHILD = """
import json, sys
from MedGANTranslateLib.file_translation import translate_files
from MedGANTranslateLib.run_options import RunOptions
translate_files(sys.argv[1], [sys.argv[2]], sys.argv[3], options=RunOptions(device="cpu"))
peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"peak": peak}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc/self/status")
@pytest.mark.parametrize("model", [DEFAULT_MODEL, DEFAULT_MODEL.parent / "mr-t1-to-t1c-pix2pix"], ids=["ct", "t1c"])
def test_traced_estimate_is_close_to_the_peak_of_a_real_translation(tmp_path, model):
    """The T1c model finds the scan's white matter first (a distance transform over the head: ~45 bytes a voxel
    for a moment, before the inference accumulators exist); the estimate has to hold for that peak too."""
    t1 = tmp_path / "t1.nii.gz"
    sitk.WriteImage(make_phantom(3).t1, str(t1))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(t1), str(tmp_path / "synthetic.nii.gz")],
                          capture_output=True, text=True, check=True)
    peak = json.loads(proc.stdout.splitlines()[-1])["peak"]

    card = load_card(model)
    headers, settings = [read_header(str(t1))], inference_settings(card)
    traced = traced_job_bytes(card, headers, settings)
    bound = estimate_job_bytes(headers, card.preprocessing["spacing"], estimate_window_bytes(settings, 1, 16))
    assert 0.85 * peak <= traced <= 1.5 * peak, (traced / GB, peak / GB)
    assert bound >= traced
