"""``medgan-translate models check``: the bare network's output on a saved array against the training code's."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from MedGANTranslateLib.checkpoints import load_generator
from MedGANTranslateLib.model_check import check_model

from cli_in_process import process_settings_kept, run


@pytest.fixture(autouse=True)
def engine_in_this_process():
    with process_settings_kept():
        yield


@pytest.fixture
def saved(make_model, tmp_path):
    """A tiny model, an input saved as the user would (torch.randn) and the network's own output for it."""
    card = make_model()
    torch.manual_seed(1)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        y = load_generator(card)(x)
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    return card, tmp_path / "x.npy", tmp_path / "y.npy", y.numpy()


def test_the_same_output_passes_with_exit_0(saved):
    card, x, y, _ = saved
    code, out, err = run("models", "check", card.folder, "--tensor", x, "--expect", y)
    assert code == 0, err
    assert out.startswith("MATCH") and "2x1x16x16x16" in out and "max |difference| 0" in out


def test_a_difference_of_1e_3_fails_with_exit_1_saying_where(saved, tmp_path):
    card, x, _, y = saved
    perturbed = y.copy()
    perturbed[1, 0, 3, 4, 5] += 1e-3
    np.save(tmp_path / "bad.npy", perturbed)
    code, out, _ = run("models", "check", card.folder, "--tensor", x, "--expect", tmp_path / "bad.npy")
    assert code == 1
    assert "DIFFER" in out and "0.001" in out and "(1, 0, 3, 4, 5)" in out and "100 x atol" in out
    assert "1 of 8192 values" in out and "--framework" in out  # and what to look at
    assert run("models", "check", card.folder, "--tensor", x, "--expect", tmp_path / "bad.npy",
               "--atol", "2e-3")[0] == 0


def test_json_output_and_arrays_without_the_batch_axis(saved, tmp_path):
    card, x, _, y = saved
    np.save(tmp_path / "x1.npy", np.load(x)[0])  # C x D x H x W
    np.save(tmp_path / "y1.npy", y[0])
    code, out, _ = run("models", "check", card.folder, "--tensor", tmp_path / "x1.npy", "--expect",
                       tmp_path / "y1.npy", "--json")
    assert code == 0
    event = json.loads(out)
    assert event["event"] == "done"
    assert event["check"]["passed"] is True and event["check"]["shape"] == [1, 1, 16, 16, 16]
    assert event["check"]["max_abs"] <= 1e-6 and event["check"]["model"] == "tiny@0.1.0"


def test_the_api_reports_max_mean_and_index(saved):
    card, x, y, _ = saved
    result = check_model(str(card.folder), x, y)
    assert result.passed and result.max_abs == 0 and result.mean_abs == 0 and result.total == 2 * 16 ** 3


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("not_npy", "not a readable .npy array"),
    ("pickled", "not a readable .npy array"),
    ("rank", "is 3D: give N x C x D x H x W"),
    ("channels", "has 2 channel(s)"),
    ("nan", "NaN or Inf"),
    ("expect_shape", "has shape (2, 1, 8, 16, 16), but the network's output"),
    ("strings", "holds <U1 values"),
])
def test_arrays_that_cannot_be_compared_exit_2_saying_why(saved, tmp_path, case, message):
    card, x, y, expected = saved
    tensor, expect = x, y
    bad = tmp_path / "bad.npy"
    if case == "missing":
        tensor = tmp_path / "nothing.npy"
    elif case == "not_npy":
        bad.write_text("not an array")
        tensor = bad
    elif case == "pickled":
        np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        tensor = bad
    elif case == "rank":
        np.save(bad, np.zeros((16, 16), np.float32))
        tensor = bad
    elif case == "channels":
        np.save(bad, np.zeros((1, 2, 16, 16, 16), np.float32))
        tensor = bad
    elif case == "nan":
        np.save(bad, np.full((1, 1, 16, 16, 16), np.nan, np.float32))
        tensor = bad
    elif case == "expect_shape":
        np.save(bad, expected[:, :, :8])
        expect = bad
    elif case == "strings":
        np.save(bad, np.array(["a", "b"]))
        tensor = bad
    code, _, err = run("models", "check", card.folder, "--tensor", tensor, "--expect", expect)
    assert code == 2
    assert message in err


def test_nan_in_the_expected_output_is_a_difference(saved, tmp_path):
    card, x, _, y = saved
    broken = y.copy()
    broken[0, 0, 0, 0, 1] = np.nan
    np.save(tmp_path / "nan.npy", broken)
    code, out, _ = run("models", "check", card.folder, "--tensor", x, "--expect", tmp_path / "nan.npy")
    assert code == 1 and "1 value(s) NaN or Inf" in out and "(0, 0, 0, 0, 1)" in out


def test_an_unknown_model_exits_2(saved):
    _, x, y, _ = saved
    code, _, err = run("models", "check", "no-such-model", "--tensor", x, "--expect", y)
    assert code == 2 and "Unknown model 'no-such-model'" in err
