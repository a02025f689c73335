"""Model cards and the registry: schema errors name file and field, defaults, search order, versions."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from MedGANTranslateLib.card import load_card, read_card_summary, validate_card_data
from MedGANTranslateLib.errors import CardError, ModelNotFoundError
from MedGANTranslateLib.model_folder import tiny_card_data
from MedGANTranslateLib.registry import ENV_VAR, list_models, resolve_model


def write_card(folder, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(data))
    return folder


def valid_data(**changes):
    data = tiny_card_data()
    data["weights"]["sha256"] = "a" * 64
    data.update(changes)
    return data


def test_defaults_from_the_schema_are_filled(tmp_path):
    card = load_card(write_card(tmp_path / "m", valid_data()))
    assert card.inference["overlap"] == 0.25 and card.inference["blend"] == "gaussian"
    assert card.inference["skip_background"] is True and card.preprocessing["n4"] is False
    assert card.preprocessing["normalization"][0]["mask"] == "body"
    assert card.postprocessing["body_mask"] == {"threshold": None, "closing_radius_mm": 3, "dilation_mm": 2,
                                               "working_spacing_mm": 2}


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda d: d["inference"].update(overlap=1.5), "inference.overlap", "maximum of 1"),
        (lambda d: d.update(version="1.0"), "version", "does not match"),
        (lambda d: d["output"].update(dtype="int64"), "output.dtype", "is not one of"),
        (lambda d: d.pop("license"), "(top level)", "'license' is a required property"),
        (lambda d: d["weights"].update(sha256="xyz"), "weights.sha256", "does not match"),
        (lambda d: d["inputs"][0].update(modality="XRAY"), "inputs.0.modality", "is not one of"),
    ],
)
def test_schema_errors_name_file_field_and_expectation(tmp_path, mutate, field, words):
    data = valid_data()
    mutate(data)
    folder = write_card(tmp_path / "bad", data)
    with pytest.raises(CardError) as info:
        load_card(folder)
    message = str(info.value)
    assert str(folder / "model.json") in message and f"'{field}'" in message and words in message


def test_normalization_count_must_match_inputs(tmp_path):
    data = valid_data()
    data["preprocessing"]["normalization"] *= 2
    with pytest.raises(CardError, match="1 input"):
        validate_card_data(data, "card.json")


def test_invalid_json_reports_line_and_column(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.json").write_text('{"id": "x",\n  oops}')
    with pytest.raises(CardError, match="line 2, column 3"):
        load_card(folder)


def test_registry_search_order_env_var_and_versions(tmp_path, monkeypatch):
    write_card(tmp_path / "a" / "m1", valid_data(id="model-one", version="1.0.0"))
    write_card(tmp_path / "b" / "m1-new", valid_data(id="model-one", version="1.2.0"))
    write_card(tmp_path / "b" / "m2", valid_data(id="model-two"))
    (tmp_path / "b" / "junk").mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "b"))
    models = list_models([tmp_path / "a"])
    ids = [(m.id, m.version) for m in models if m.id.startswith("model-")]
    assert ids == [("model-one", "1.2.0"), ("model-one", "1.0.0"), ("model-two", "0.1.0")]
    assert resolve_model("model-one", [tmp_path / "a"]).version == "1.2.0"
    assert resolve_model("model-one@1.0.0", [tmp_path / "a"]).version == "1.0.0"
    with pytest.raises(ModelNotFoundError, match="model-two"):
        resolve_model("model-three", [tmp_path / "a"])


def test_summaries_need_no_third_party_package(tmp_path):
    """The Slicer panel lists models before dependencies are installed: reading a summary must not import
    jsonschema, torch or numpy."""
    folder = write_card(tmp_path / "m", valid_data())
    code = (
        "import sys; [sys.modules.__setitem__(m, None) for m in ('jsonschema', 'torch', 'numpy', 'SimpleITK')]; "
        "import MedGANTranslateLib.card as c, MedGANTranslateLib.registry as r; "
        f"s = c.read_card_summary(r'{folder}'); print(s.id, s.inputs[0].label, [m.id for m in r.list_models([r'{tmp_path}'])].count('tiny-test'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["tiny-test", "MR", "T1w", "1"]


def test_summary_of_card_missing_fields_is_a_card_error(tmp_path):
    folder = write_card(tmp_path / "m", {"id": "x"})
    with pytest.raises(CardError, match="required field"):
        read_card_summary(folder)
