"""``medgan-translate models import``: checkpoints saved the way each peer saves them become model folders whose
architecture is what test_peer_layouts.py's LAYOUTS say for that peer, whose network computes what the peer's
network computes in the peer's own mode (≤ 1e-5), and which ``models check`` passes; what the weights cannot tell
is refused, naming what to pass."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pytest
import torch
from monai.networks import nets
from torch import nn

from MedGANTranslateLib.card import load_card
from MedGANTranslateLib.checkpoints import export_onnx, export_torchscript, load_generator
from MedGANTranslateLib.layers import bias_rule
from MedGANTranslateLib.model_import import ImportOptions, ImportRefused, import_checkpoint
from MedGANTranslateLib.monai_bundle import read_bundle
from MedGANTranslateLib.networks import _BUILTINS

from cli_in_process import process_settings_kept, run
from peer_networks import randomise, resnet, save_like_the_peer
from test_peer_layouts import LAYOUTS, _peer_output

ATOL = 1e-5


@pytest.fixture(autouse=True)
def engine_in_this_process():
    with process_settings_kept():
        yield


def answers(channels: int = 1, roi: Sequence[int] = (), model_id: str = "imported") -> List[str]:
    """The flags for what no checkpoint can tell: a CT model from T1w (and T2w) scans at 1 mm."""
    inputs = [a for seq in ("T1w", "T2w", "FLAIR", "T1w+Gd")[:channels] for a in ("--input", f"MR:{seq}")]
    return ["--id", model_id, *inputs, "--output-modality", "CT", "--output-range", "-1024", "3071",
            "--spacing", "1", "1", "1", "--normalization", "percentile:0.5:99.5", "--orientation", "LPS",
            *(["--roi", *map(str, roi)] if roi else [])]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def effective(architecture: Dict[str, Any]) -> Dict[str, Any]:
    """A built-in's params with every default and layout option spelled out, so that two spellings of one
    layout compare equal (``bias: {"transposed": true}`` with instance norm is junyanz's rule)."""
    params = dict(architecture["params"])
    if architecture["type"] != "builtin":
        return params
    signature = inspect.signature(_BUILTINS[architecture["name"]])
    full = {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    full.update(params)
    full["bias"] = bias_rule(full["norm"], params.get("bias"))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}


def forward_of(architecture: Dict[str, Any]) -> Dict[str, Any]:
    return {"norm_statistics": "running", "dropout": False, **(architecture.get("forward") or {})}


# (LAYOUTS name, extra flags): every peer the issue names, with the flags a user of that peer passes
CASES = [
    ("junyanz-resnet-3d-instance", ["--framework", "junyanz"]),
    ("junyanz-resnet-2d-batch", []),  # 2D, biases and no aliases: only junyanz builds it so
    ("junyanz-resnet-3d-none-legacy", ["--framework", "junyanz"]),
    ("junyanz-unet-3d-instance-legacy", ["--framework", "junyanz"]),
    ("junyanz-unet-2d-batch-no-eval", ["--framework", "junyanz", "--norm-statistics", "window"]),
    ("davidiommi-resnet-instance", ["--framework", "davidiommi"]),
    ("davidiommi-resnet-batch", ["--framework", "davidiommi"]),
    ("davidiommi-unet-instance", []),  # no bias before instance norm: only davidiommi
    ("ganslate-resnet3d-batch", ["--framework", "ganslate"]),
    ("ganslate-resnet2d-instance", []),  # ganslate's checkpoint of networks and optimisers says it
    ("ganslate-unet3d-batch", ["--framework", "ganslate"]),
    ("ganslate-vnet3d-instance", []),
    ("ganslate-vnet3d-batch-inverse-layers", []),
    ("ganslate-vnet3d-inverse-direction", ["--direction", "inverse"]),
    ("ganslate-vnet2d-instance", []),
    ("monai-unet-3d", ["--framework", "monai", "--network", "UNet", "--params", json.dumps(
        {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8, 16], "strides": [2, 2],
         "num_res_units": 1})]),
    ("monai-basicunet-2d", []),  # BasicUNet's features are read from its keys
]


def _import_peer(name: str, flags: Sequence[str], tmp_path: Path):
    layout = LAYOUTS[name]
    torch.manual_seed(0)
    peer = randomise(layout.build())
    weights_file, _ = save_like_the_peer(peer, layout.saved_as, tmp_path / "training")
    source = tmp_path / "training" / weights_file
    before = sha(source)
    code, out, err = run("models", "import", source, "--out", tmp_path / "model",
                         *answers(layout.channels[0], layout.size), *flags)
    assert code == 0, err
    assert sha(source) == before, "the source checkpoint is never modified"
    return layout, peer, load_card(tmp_path / "model"), out


@pytest.mark.parametrize("name, flags", CASES, ids=[c[0] for c in CASES])
def test_an_imported_peer_checkpoint_has_the_peer_layout_and_computes_what_the_peer_computes(name, flags, tmp_path):
    layout, peer, card, out = _import_peer(name, flags, tmp_path)
    wanted = dict(layout.architecture)
    if name == "ganslate-vnet3d-inverse-direction":
        assert card.architecture["params"]["direction"] == "inverse"
    assert card.architecture["type"] == wanted["type"] and card.architecture.get("name") == wanted["name"]
    assert effective(card.architecture) == effective(wanted)
    assert forward_of(card.architecture) == forward_of(wanted)
    assert card.weights["sha256"] == sha(tmp_path / "training" / card.weights["file"])
    assert "SHA-256 " + card.sha256 in out and "models check" in out
    if len(layout.size) == 2:
        assert card.inference["planes"] == ["axial"] and card.inference["roi_size"] == list(layout.size)

    torch.manual_seed(3)
    x = torch.randn(3, layout.channels[0], *layout.size)
    expected = _peer_output(peer, x, layout)
    with torch.no_grad():
        got = load_generator(card)(x)
    assert (got - expected).abs().max().item() <= ATOL
    assert expected.std() > 1e-3

    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", expected.numpy())
    np.save(tmp_path / "y_off.npy", expected.numpy() + 1e-3)
    assert run("models", "check", card.folder, "--tensor", tmp_path / "x.npy", "--expect", tmp_path / "y.npy")[0] == 0
    assert run("models", "check", card.folder, "--tensor", tmp_path / "x.npy", "--expect",
               tmp_path / "y_off.npy")[0] == 1


def test_junyanz_unet_keeps_the_dropout_layers_it_cannot_see(tmp_path):
    """Dropout holds no weights: in eval mode the network computes the same with or without; --dropout keeps it
    on as junyanz's test.py without --eval does."""
    layout, peer, card, _ = _import_peer("junyanz-unet-2d-batch-dropout", ["--framework", "junyanz"], tmp_path)
    assert "use_dropout" not in card.architecture["params"]
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert (load_generator(card)(x) - _peer_output(peer, x, layout)).abs().max().item() <= ATOL
    code, _, err = run("models", "import", tmp_path / "training" / "latest_net_G.pth", "--out", tmp_path / "on",
                       *answers(1, (64, 64)), "--framework", "junyanz", "--norm-statistics", "window", "--dropout")
    assert code == 0, err
    on = load_card(tmp_path / "on").architecture
    assert on["params"]["use_dropout"] is True and on["forward"] == {"norm_statistics": "window", "dropout": True}


def _worked_example_checkpoint(folder: Path) -> Path:
    """The example of docs/model-cards.md: a junyanz 3D ResNet saved by its training code (latest_net_G.pth)."""
    torch.manual_seed(0)
    peer = randomise(resnet("junyanz", 3, 1, 1, ngf=4, n_blocks=2)).eval()
    name, _ = save_like_the_peer(peer, "state_dict", folder)
    return folder / name


def test_the_ambiguous_framework_is_refused_naming_the_candidates_and_every_missing_flag(tmp_path):
    source = _worked_example_checkpoint(tmp_path / "training")
    code, _, err = run("models", "import", source, "--out", tmp_path / "model")
    assert code == 2
    assert not (tmp_path / "model").exists()
    for flag in ("--framework davidiommi|ganslate|junyanz", "--id", "--input", "--output-modality", "--output-range",
                 "--spacing", "--normalization"):
        assert f"missing {flag}" in err, flag
    assert "padding holds no weights" in err
    assert "junyanz (edge_padding reflect, padding reflect, eval mode)" in err
    assert "davidiommi (edge_padding replicate, padding replicate, each window's own norm statistics)" in err
    code, _, err = run("models", "import", source, "--out", tmp_path / "model", *answers())
    assert code == 2 and "missing --framework" in err and "missing --id" not in err


def test_a_framework_whose_layout_the_weights_contradict_is_refused(tmp_path):
    layout = LAYOUTS["ganslate-resnet3d-batch"]
    torch.manual_seed(0)
    peer = randomise(layout.build())
    torch.save(peer.state_dict(), tmp_path / "g.pth")
    code, _, err = run("models", "import", tmp_path / "g.pth", "--out", tmp_path / "m", *answers(),
                       "--framework", "junyanz")
    assert code == 2
    assert "not how junyanz builds it" in err and "give --framework ganslate" in err
    code, _, err = run("models", "import", tmp_path / "g.pth", "--out", tmp_path / "m", *answers(),
                       "--framework", "davidiommi")
    assert code == 2 and "not how davidiommi builds it" in err and "give --framework ganslate" in err
    assert not (tmp_path / "m").exists()


def test_norms_the_keys_cannot_tell_apart_are_refused_naming_norm(tmp_path):
    """davidiommi's U-Net has no bias before its norms: without the instance norms' saved statistics, instance
    norm and no norm leave the same keys."""
    layout = LAYOUTS["davidiommi-unet-instance"]
    torch.manual_seed(0)
    state = {k: v for k, v in randomise(layout.build()).state_dict().items()
             if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    torch.save(state, tmp_path / "g.pth")
    flags = [*answers(1, (32, 32, 32)), "--framework", "davidiommi"]
    code, _, err = run("models", "import", tmp_path / "g.pth", "--out", tmp_path / "m", *flags)
    assert code == 2 and "missing --norm instance|none (the norm it was trained with)" in err
    assert "davidiommi (bias {'conv': False, 'transposed': False}, norm instance)" in err
    code, _, err = run("models", "import", tmp_path / "g.pth", "--out", tmp_path / "m", *flags, "--norm", "instance")
    assert code == 0, err
    assert effective(load_card(tmp_path / "m").architecture) == effective(layout.architecture)


def test_wrong_answers_are_named_with_the_missing_ones(tmp_path):
    source = _worked_example_checkpoint(tmp_path / "training")
    code, _, err = run("models", "import", source, "--out", tmp_path / "m", "--framework", "junyanz", "--id", "Bad Id",
                       "--input", "XR", "--input", "MR", "--output-modality", "CT", "--output-range", "-1024", "3071",
                       "--spacing", "1", "1", "1", "--normalization", "median", "--roi", "30", "30", "30")
    assert code == 2
    for part in ("--id 'Bad Id'", "--input 'XR'", "--normalization 'median' is not a normalisation",
                 "each side must be at least 8 and a multiple of 4"):
        assert part in err, part
    code, _, err = run("models", "import", source, "--out", tmp_path / "m", "--framework", "junyanz",
                       *answers(channels=2))
    assert code == 2 and "--input was given 2 times, but the network takes 1 input channel(s)" in err


def test_a_pickled_checkpoint_that_needs_python_objects_is_refused_unread(tmp_path):
    torch.save(resnet("junyanz", 3, 1, 1, ngf=4, n_blocks=1), tmp_path / "whole_model.pth")  # the module itself
    code, _, err = run("models", "import", tmp_path / "whole_model.pth", "--out", tmp_path / "m", *answers(),
                       "--framework", "junyanz")
    assert code == 2
    assert "needs Python objects unpickled" in err and "peer_networks" in err and "state_dict()" in err
    assert not (tmp_path / "m").exists()


def test_a_checkpoint_matching_no_layout_says_what_it_found(tmp_path):
    net = nn.Sequential(nn.Conv3d(1, 4, 3), nn.ReLU(), nn.Conv3d(4, 1, 1))
    torch.save(net.state_dict(), tmp_path / "other.pth")
    code, _, err = run("models", "import", tmp_path / "other.pth", "--out", tmp_path / "m", *answers())
    assert code == 2
    assert "holds 4 tensors (keys 0.weight, 0.bias, 2.weight, 2.bias)" in err
    assert "match none of the layouts" in err and "TorchScript or ONNX" in err


def test_a_resnet_whose_shapes_fit_no_builtin_says_which_keys(tmp_path):
    layout = LAYOUTS["junyanz-resnet-3d-instance"]
    state = layout.build().state_dict()
    state["model.4.weight"] = torch.zeros(5, 4, 3, 3, 3)  # a down convolution of a width the layout never has
    torch.save(state, tmp_path / "odd.pth")
    code, _, err = run("models", "import", tmp_path / "odd.pth", "--out", tmp_path / "m", *answers(),
                       "--framework", "junyanz")
    assert code == 2
    assert "looks like a 3D ResNet" in err and "model.4.weight (file (5, 4, 3, 3, 3)" in err


def test_a_ganslate_checkpoint_takes_key_or_refuses_naming_its_keys(tmp_path):
    layout = LAYOUTS["ganslate-vnet3d-instance"]
    torch.manual_seed(0)
    state = randomise(layout.build()).state_dict()
    torch.save({"netG_A": state, "netG_B": state, "epoch": torch.tensor(3)}, tmp_path / "ckpt.pth")
    code, _, err = run("models", "import", tmp_path / "ckpt.pth", "--out", tmp_path / "m", *answers())
    assert code == 2 and "Give --key" in err and "netG_A, netG_B" in err
    code, out, err = run("models", "import", tmp_path / "ckpt.pth", "--out", tmp_path / "m", *answers(),
                         "--key", "netG_B")
    assert code == 0, err
    card = load_card(tmp_path / "m")
    assert card.weights["format"] == "ganslate" and card.weights["key"] == "netG_B"


def test_an_existing_model_folder_is_never_overwritten(tmp_path):
    source = _worked_example_checkpoint(tmp_path / "training")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    code, _, err = run("models", "import", source, "--out", tmp_path / "m", *answers(), "--framework", "junyanz")
    assert code == 2 and "is not an empty folder" in err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


# --- MONAI bundles ------------------------------------------------------------------------------------------

UNET_ARGS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8, 16], "strides": [2, 2],
             "num_res_units": 1}


def _bundle(folder: Path, network_def: Dict[str, Any]) -> nn.Module:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    torch.manual_seed(0)
    net = randomise(nets.UNet(**UNET_ARGS))
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    config = {
        "imports": ["$import glob"],
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
        ]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 4},
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    return net


def test_a_monai_bundle_is_read_without_executing_its_config(tmp_path):
    net = _bundle(tmp_path / "bundle", {"_target_": "UNet", **UNET_ARGS})
    code, out, err = run("models", "import", tmp_path / "bundle", "--framework", "monai-bundle", "--out",
                         tmp_path / "m", "--id", "bundled", "--input", "CT", "--output-modality", "MR",
                         "--output-range", "0", "1000")
    assert code == 0, err
    card = load_card(tmp_path / "m")
    assert card.architecture == {"type": "monai", "name": "UNet", "params": UNET_ARGS}
    assert card.preprocessing["orientation"] == "RAS" and card.preprocessing["spacing"] == [1.5, 1.5, 2.0]
    assert card.preprocessing["normalization"] == [
        {"method": "range", "source_range": [-57, 164], "target_range": [0.0, 1.0]}]
    assert card.inference["roi_size"] == [32, 32, 32] and card.inference["padding_value"] == 0.0
    assert card.weights["file"] == "model.pt"
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        expected = net.eval()(x)
        assert (load_generator(card)(x) - expected).abs().max().item() <= ATOL
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", expected.numpy())
    assert run("models", "check", "bundled", "--models-dir", tmp_path, "--tensor", tmp_path / "x.npy",
               "--expect", tmp_path / "y.npy")[0] == 0


def test_a_full_target_path_is_accepted_and_flags_win_over_the_config(tmp_path):
    _bundle(tmp_path / "bundle", {"_target_": "monai.networks.nets.UNet", **UNET_ARGS})
    code, _, err = run("models", "import", tmp_path / "bundle", "--out", tmp_path / "m", "--id", "bundled",
                       "--input", "CT", "--output-modality", "MR", "--output-range", "0", "1000",
                       "--spacing", "1", "1", "1", "--orientation", "LPS", "--normalization", "zscore")
    assert code == 0, err
    card = load_card(tmp_path / "m")
    assert card.preprocessing["spacing"] == [1, 1, 1] and card.preprocessing["orientation"] == "LPS"
    assert card.preprocessing["normalization"][0]["method"] == "zscore"


@pytest.mark.parametrize("network_def, named", [
    ({"_target_": "UNet", **UNET_ARGS, "channels": "@channels"}, "network_def.channels = '@channels'"),
    ({"_target_": "UNet", **UNET_ARGS, "out_channels": "$len(@labels)"}, "network_def.out_channels = '$len(@labels)'"),
    ({"_target_": "UNet", **UNET_ARGS, "act": {"_target_": "torch.nn.ReLU"}}, "network_def.act = an object"),
])
def test_a_bundle_with_expressions_in_the_network_arguments_is_refused_naming_them(tmp_path, network_def, named):
    _bundle(tmp_path / "bundle", network_def)
    code, _, err = run("models", "import", tmp_path / "bundle", "--framework", "monai-bundle", "--out", tmp_path / "m",
                       "--id", "bundled", "--input", "CT", "--output-modality", "MR", "--output-range", "0", "1")
    assert code == 2
    assert named in err and "does not evaluate" in err
    assert not (tmp_path / "m").exists()


def test_a_bundle_network_outside_monai_is_refused(tmp_path):
    _bundle(tmp_path / "bundle", {"_target_": "mypackage.nets.Generator", **UNET_ARGS})
    with pytest.raises(ImportRefused, match="not a class of monai.networks.nets"):
        read_bundle(tmp_path / "bundle")


def test_monai_without_network_and_params_names_both(tmp_path):
    torch.save(nets.UNet(**UNET_ARGS).state_dict(), tmp_path / "model.pt")
    code, _, err = run("models", "import", tmp_path / "model.pt", "--framework", "monai", "--out", tmp_path / "m",
                       *answers())
    assert code == 2 and "missing --network NAME" in err and "missing --params JSON" in err
    code, _, err = run("models", "import", tmp_path / "model.pt", "--framework", "monai", "--out", tmp_path / "m",
                       *answers(), "--network", "UNet", "--params", json.dumps({**UNET_ARGS, "channels": [4, 8, 32]}))
    assert code == 2 and "does not fit MONAI UNet" in err and "shape mismatches" in err


# --- TorchScript and ONNX -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_torchscript_and_onnx_files_are_imported_as_they_are(fmt, tmp_path):
    layout = LAYOUTS["junyanz-unet-3d-instance-legacy"]  # 2 inputs, 32^3
    torch.manual_seed(0)
    peer = randomise(layout.build()).eval()
    example = torch.zeros(1, 2, 32, 32, 32)
    path = tmp_path / ("generator.pt" if fmt == "torchscript" else "generator.onnx")
    (export_torchscript if fmt == "torchscript" else export_onnx)(peer, path, example)
    code, out, err = run("models", "import", path, "--out", tmp_path / "m", *answers(2, (32, 32, 32)),
                         "--divisible-by", "32")
    assert code == 0, err
    card = load_card(tmp_path / "m")
    assert card.architecture == {"type": fmt} and card.weights["format"] == fmt
    assert card.inference["divisible_by"] == 32
    x = torch.randn(2, 2, 32, 32, 32)
    with torch.no_grad():
        expected = peer(x)
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", expected.numpy())
    assert run("models", "check", card.folder, "--tensor", tmp_path / "x.npy", "--expect", tmp_path / "y.npy")[0] == 0
    code, _, err = run("models", "import", path, "--out", tmp_path / "m3", *answers(3, (32, 32, 32)))
    if fmt == "onnx":  # the graph's input says 2 channels
        assert code == 2 and "the network takes 2 input channel(s)" in err
    else:  # the first convolution's weight says it
        assert code == 2 and "the network takes 2 input channel(s)" in err


def test_a_2d_onnx_file_gets_planes_from_its_input_rank(tmp_path):
    layout = LAYOUTS["junyanz-resnet-2d-batch"]
    torch.manual_seed(0)
    peer = randomise(layout.build()).eval()
    export_onnx(peer, tmp_path / "g.onnx", torch.zeros(1, 1, 32, 32))
    code, out, err = run("models", "import", tmp_path / "g.onnx", "--out", tmp_path / "m", *answers(1, (32, 32)),
                         "--divisible-by", "4", "--planes", "coronal")
    assert code == 0, err
    card = load_card(tmp_path / "m")
    assert card.inference["planes"] == ["coronal"] and card.inference["roi_size"] == [32, 32]


# --- the command line as users run it -----------------------------------------------------------------------


def test_json_progress_ends_with_a_done_event_describing_the_model(tmp_path):
    source = _worked_example_checkpoint(tmp_path / "training")
    code, out, err = run("models", "import", source, "--out", tmp_path / "m", *answers(roi=(16, 16, 16)),
                         "--framework", "junyanz", "--progress", "json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    done = events[-1]
    assert done["event"] == "done" and [e["event"] for e in events[:-1]] == ["log"] * (len(events) - 1)
    model = done["model"]
    assert model["framework"] == "junyanz" and model["family"] == "ResNet"
    assert model["architecture"]["params"]["padding"] == "reflect"
    assert model["weights"]["sha256"] == sha(source) and model["probe"]["output_shape"] == [1, 1, 16, 16, 16]
    assert model["next"].startswith("medgan-translate models check ")
    code, out, _ = run("models", "import", source, "--out", tmp_path / "m2", "--progress", "json")
    error = json.loads(out.splitlines()[-1])
    assert code == 2 and error["event"] == "error" and error["kind"] == "import" and "--framework" in error["message"]


def test_the_documented_worked_example_runs_as_a_program(tmp_path):
    """docs/model-cards.md's example, in a real process: import a junyanz 3D ResNet, then check it against the
    output the training code gave."""
    source = _worked_example_checkpoint(tmp_path / "checkpoints" / "ct_resnet3d")
    torch.manual_seed(0)
    peer = randomise(resnet("junyanz", 3, 1, 1, ngf=4, n_blocks=2)).eval()
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        np.save(tmp_path / "y.npy", peer(x).numpy())
    np.save(tmp_path / "x.npy", x.numpy())
    env = {**os.environ, "MEDGAN_TRANSLATE_THREADS": "1"}
    command = [sys.executable, "-m", "MedGANTranslateLib.cli", "models", "import", str(source), "--framework",
               "junyanz", "--out", str(tmp_path / "models" / "mr-t1-to-ct-resnet3d"), "--id", "mr-t1-to-ct-resnet3d",
               "--input", "MR:T1w", "--output-modality", "CT", "--output-range", "-1024", "3071",
               "--spacing", "1", "1", "1", "--orientation", "LPS", "--normalization", "percentile:0.5:99.5",
               "--license", "CC-BY-4.0"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "junyanz ResNet (decided by --framework)" in proc.stdout
    assert 'padding: "reflect", edge_padding: "reflect"' in proc.stdout
    check = [sys.executable, "-m", "MedGANTranslateLib.cli", "models", "check", "mr-t1-to-ct-resnet3d",
             "--models-dir", str(tmp_path / "models"), "--tensor", str(tmp_path / "x.npy"), "--expect",
             str(tmp_path / "y.npy")]
    proc = subprocess.run(check, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("MATCH  mr-t1-to-ct-resnet3d@0.1.0 on cpu: output 1x1x64x64x64")


def test_the_api_refuses_before_writing_anything(tmp_path):
    source = _worked_example_checkpoint(tmp_path / "training")
    with pytest.raises(ImportRefused, match="missing --framework"):
        import_checkpoint(source, tmp_path / "m", ImportOptions(model_id="x-y"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training"]
