"""Every weights format loads to the same network through real model folders; bad weights are refused."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

from MedGANTranslateLib.card import load_card
from MedGANTranslateLib.checkpoints import OnnxGenerator, export_torchscript, load_generator
from MedGANTranslateLib.errors import CardError, WeightsError
from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.networks import UnetGenerator, build_network
from MedGANTranslateLib.registry import sha256_file

FORMATS = ("safetensors", "state_dict", "ganslate", "torchscript", "onnx")


def _random_net(card_data, seed=0):
    torch.manual_seed(seed)
    return build_network(card_data["architecture"]).eval()


def _run(net, x):
    with torch.no_grad():
        return net(x)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One tiny U-Net published in every format; ``x`` is a volume of another size than the traced ROI."""
    root = tmp_path_factory.mktemp("models")
    data = tiny_card_data()
    net = _random_net(data)
    cards = {fmt: save_model_folder(root / fmt, data, net, fmt=fmt) for fmt in FORMATS}
    x = torch.randn(2, 1, 24, 16, 8)
    return net, cards, x


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_same_output(published, fmt):
    net, cards, x = published
    loaded = load_generator(cards[fmt])
    assert not loaded.training
    assert (_run(loaded, x) - _run(net, x)).abs().max() < 1e-4


def test_loaded_types_and_card_fields(published):
    _, cards, _ = published
    assert isinstance(load_generator(cards["safetensors"]), UnetGenerator)
    assert isinstance(load_generator(cards["onnx"]), OnnxGenerator)
    onnx_card = cards["onnx"]
    assert onnx_card.architecture == {"type": "onnx"}
    assert onnx_card.inference["divisible_by"] == 8
    assert onnx_card.sha256 == sha256_file(onnx_card.weights_path)
    assert onnx_card.weights["size_bytes"] == onnx_card.weights_path.stat().st_size
    assert json.loads(onnx_card.path.read_text())["weights"]["format"] == "onnx"


def test_batch_norm_running_stats_survive_safetensors(tmp_path):
    arch = {"type": "builtin", "name": "resnet_generator",
            "params": {"in_channels": 1, "out_channels": 1, "ngf": 4, "n_blocks": 1, "norm": "batch"}}
    net = build_network(arch)
    net.train()
    with torch.no_grad():
        net(torch.randn(2, 1, 8, 8, 8) * 3 + 1)  # moves the running statistics away from their defaults
    card = save_model_folder(tmp_path, tiny_card_data(architecture=arch), net)
    assert net.training  # saving leaves the caller's mode alone
    loaded = load_generator(card)
    assert torch.equal(loaded.model[2].running_mean, net.model[2].running_mean)
    x = torch.randn(1, 1, 12, 8, 8)
    assert torch.allclose(_run(loaded, x), _run(net.eval(), x))


def test_legacy_instance_norm_buffers_are_dropped(tmp_path):
    data = tiny_card_data()
    net = _random_net(data)
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm3d):
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.ones(module.num_features)
            state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    with pytest.raises(RuntimeError):
        UnetGenerator(1, 1, 3, ngf=4, norm="instance").load_state_dict(state)
    torch.save(state, tmp_path / "latest_net_G.pth")
    card = save_model_folder(tmp_path, data, fmt="state_dict", weights_file="latest_net_G.pth")
    x = torch.randn(1, 1, 16, 16, 16)
    assert torch.equal(_run(load_generator(card), x), _run(net, x))


def test_data_parallel_prefix_is_stripped(tmp_path):
    data = tiny_card_data()
    net = _random_net(data)
    state = nn.DataParallel(net).state_dict()
    assert all(k.startswith("module.") for k in state)
    torch.save(state, tmp_path / "net_G.pth")
    card = save_model_folder(tmp_path, data, fmt="state_dict", weights_file="net_G.pth")
    x = torch.randn(1, 1, 16, 16, 16)
    assert torch.equal(_run(load_generator(card), x), _run(net, x))


class _Payload:
    """Unpickling this creates the marker file: proof that arbitrary code would have run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"G": _Payload(str(marker))}, tmp_path / "model.pth")
    card = save_model_folder(tmp_path, tiny_card_data(), fmt="state_dict", weights_file="model.pth")
    with pytest.raises(WeightsError, match=r"weights-only.*objects unpickled \(io\.open\).*state_dict\(\)"):
        load_generator(card)
    assert not marker.exists()


def test_whole_pickled_module_is_refused(tmp_path):
    data = tiny_card_data()
    torch.save(_random_net(data), tmp_path / "model.pth")
    card = save_model_folder(tmp_path, data, fmt="state_dict", weights_file="model.pth")
    with pytest.raises(WeightsError, match="only weights-only checkpoints"):
        load_generator(card)


def test_tampered_weights_are_refused(tmp_path):
    card = save_model_folder(tmp_path, tiny_card_data(), _random_net(tiny_card_data()))
    raw = bytearray(card.weights_path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    card.weights_path.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="SHA-256"):
        load_generator(card)
    card.weights_path.unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_generator(card)
    with pytest.raises(WeightsError, match="missing"):
        load_generator(card, verify=False)


def test_ganslate_key_choice_and_missing_key(tmp_path):
    data = tiny_card_data()
    g_ab, g_ba = _random_net(data, seed=1), _random_net(data, seed=2)
    torch.save({"G_AB": g_ab.state_dict(), "G_BA": g_ba.state_dict(), "optimizer_G": {"lr": 2e-4}},
               tmp_path / "ckpt.pth")
    x = torch.randn(1, 1, 16, 16, 16)
    default = save_model_folder(tmp_path / "ab", data, fmt="ganslate", weights_file="../ckpt.pth")
    assert torch.equal(_run(load_generator(default), x), _run(g_ab, x))
    data["weights"]["key"] = "G_BA"
    chosen = save_model_folder(tmp_path / "ba", data, fmt="ganslate", weights_file="../ckpt.pth")
    assert torch.equal(_run(load_generator(chosen), x), _run(g_ba, x))

    torch.save({"D_A": g_ab.state_dict(), "G_BA": g_ba.state_dict()}, tmp_path / "other.pth")
    del data["weights"]["key"]
    card = save_model_folder(tmp_path / "none", data, fmt="ganslate", weights_file="../other.pth")
    with pytest.raises(WeightsError, match=r"G_AB, G; keys found: D_A, G_BA"):
        load_generator(card)


def test_multi_network_file_as_state_dict_points_to_ganslate(tmp_path):
    data = tiny_card_data()
    torch.save({"G": _random_net(data).state_dict()}, tmp_path / "ckpt.pth")
    card = save_model_folder(tmp_path, data, fmt="state_dict", weights_file="ckpt.pth")
    with pytest.raises(WeightsError, match=r"keys \[G\].*'ganslate'"):
        load_generator(card)


def test_strict_mismatch_names_card_file_and_keys(tmp_path):
    small = tiny_card_data(model_id="mismatch")
    save_model_folder(tmp_path, small, _random_net(small))
    bigger = json.loads((tmp_path / "model.json").read_text())
    bigger["architecture"]["params"]["ngf"] = 8
    (tmp_path / "model.json").write_text(json.dumps(bigger))
    with pytest.raises(WeightsError) as err:
        load_generator(load_card(tmp_path))
    msg = str(err.value)
    assert "'mismatch'" in msg and "model.safetensors" in msg
    assert "shape mismatches: model.model.0.weight (file (4, 1, 4, 4, 4), network (8, 1, 4, 4, 4))" in msg

    resnet = {"type": "builtin", "name": "resnet_generator",
              "params": {"in_channels": 1, "out_channels": 1, "ngf": 4, "n_blocks": 1}}
    bigger["architecture"] = resnet
    (tmp_path / "model.json").write_text(json.dumps(bigger))
    with pytest.raises(WeightsError, match=r"missing keys: model\.1\.weight.*unexpected keys: model\.model\.0\.bias"):
        load_generator(load_card(tmp_path))


def test_unreadable_files_raise_weights_errors(tmp_path):
    data = tiny_card_data()
    for fmt, name in [("safetensors", "w.safetensors"), ("state_dict", "w.pth"), ("torchscript", "w.pt"),
                      ("onnx", "w.onnx")]:
        (tmp_path / fmt).mkdir()
        (tmp_path / fmt / name).write_bytes(b"not weights at all" * 4)
        card = save_model_folder(tmp_path / fmt, data, fmt=fmt, weights_file=name)
        with pytest.raises(WeightsError, match="not a"):
            load_generator(card)


def test_onnx_without_onnxruntime_says_how_to_install(published, monkeypatch):
    _, cards, _ = published
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes "import onnxruntime" fail
    with pytest.raises(WeightsError, match="pip install onnxruntime"):
        load_generator(cards["onnx"])


def test_torchscript_export_keeps_training_mode(tmp_path):
    net = UnetGenerator(1, 1, 3, ngf=2, norm="batch", use_dropout=True).train()
    export_torchscript(net, tmp_path / "m.pt", torch.randn(1, 1, 8, 8, 8))
    assert net.training
    traced = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randn(1, 1, 16, 8, 8)
    assert torch.allclose(_run(traced, x), _run(net.eval(), x), atol=1e-5)


def _replication_padded_resnet(block_padding: str, ngf: int = 4, n_blocks: int = 2) -> nn.Sequential:
    """The ResNet generator of davidiommi's 3D-CycleGan-Pytorch-MedImaging and ganslate's Resnet3D as their
    architecture is described (instance norm): junyanz's layout, but the 7³ stem and output convolutions padded
    by replication. Written here layer by layer, independently of the engine's class; the state-dict keys
    (model.N...) are the ones those projects save."""
    norm = lambda c: nn.InstanceNorm3d(c)  # noqa: E731
    pad = {"reflect": nn.ReflectionPad3d, "replicate": nn.ReplicationPad3d}[block_padding]

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.conv_block = nn.Sequential(pad(1), nn.Conv3d(dim, dim, 3, bias=True), norm(dim), nn.ReLU(True),
                                            pad(1), nn.Conv3d(dim, dim, 3, bias=True), norm(dim))

        def forward(self, x):
            return x + self.conv_block(x)

    layers = [nn.ReplicationPad3d(3), nn.Conv3d(1, ngf, 7, bias=True), norm(ngf), nn.ReLU(True)]
    layers += [nn.Conv3d(ngf, 2 * ngf, 3, stride=2, padding=1), norm(2 * ngf), nn.ReLU(True),
               nn.Conv3d(2 * ngf, 4 * ngf, 3, stride=2, padding=1), norm(4 * ngf), nn.ReLU(True)]
    layers += [Block(4 * ngf) for _ in range(n_blocks)]
    layers += [nn.ConvTranspose3d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1), norm(2 * ngf),
               nn.ReLU(True),
               nn.ConvTranspose3d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1), norm(ngf), nn.ReLU(True)]
    layers += [nn.ReplicationPad3d(3), nn.Conv3d(ngf, 1, 7), nn.Tanh()]
    return _Generator(nn.Sequential(*layers))


class _Generator(nn.Module):
    """A peer's generator module: its layers under ``model``, as the state-dict keys say."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


@pytest.mark.parametrize("block_padding", ["reflect", "replicate"])
def test_a_replication_padded_resnet_computes_what_its_own_layout_computes(tmp_path, block_padding):
    """Issue 21's worst case: padding layers hold no weights, so such a checkpoint loaded into junyanz's
    reflection-padded stem ran without a word and differed by up to 2 on outputs in [-1, 1]. The card's
    edge_padding describes it; the default (reflect) is shown to compute something else."""
    torch.manual_seed(3)
    reference = _replication_padded_resnet(block_padding).eval()
    x = torch.randn(1, 1, 16, 20, 12)
    expected = _run(reference, x)
    params = {"in_channels": 1, "out_channels": 1, "ngf": 4, "n_blocks": 2, "norm": "instance",
              "padding": block_padding}
    outputs = {}
    for edge in ("replicate", "reflect"):
        architecture = {"type": "builtin", "name": "resnet_generator", "params": dict(params, edge_padding=edge)}
        (tmp_path / edge).mkdir()
        torch.save(reference.state_dict(), tmp_path / edge / "latest_net_G.pth")  # as the peers save it
        card = save_model_folder(tmp_path / edge, tiny_card_data(architecture=architecture), fmt="state_dict",
                                 weights_file="latest_net_G.pth")
        outputs[edge] = _run(load_generator(card), x)
    assert (outputs["replicate"] - expected).abs().max() <= 1e-5
    assert (outputs["reflect"] - expected).abs().max() > 1e-2


def test_edge_padding_must_be_a_published_layout():
    with pytest.raises(CardError, match="edge_padding"):
        build_network({"type": "builtin", "name": "resnet_generator",
                       "params": {"in_channels": 1, "out_channels": 1, "edge_padding": "zeros"}})


@pytest.mark.parametrize("batch", [1, 2])
def test_an_onnx_export_with_a_fixed_batch_takes_any_number_of_windows(tmp_path, batch):
    """Exports made with a fixed batch (most often 1) loaded, then failed on the engine's batches of windows."""
    pytest.importorskip("onnxruntime")
    import onnxruntime

    net = _random_net(tiny_card_data())
    example = torch.randn(batch, 1, 16, 16, 16)
    with torch.no_grad():
        torch.onnx.export(net, (example,), str(tmp_path / "fixed.onnx"), dynamo=True, external_data=False,
                          input_names=["input"], output_names=["output"], verbose=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == batch
    generator = OnnxGenerator(session)
    x = torch.randn(3, 1, 16, 16, 16)
    assert torch.allclose(generator(x), _run(net, x), atol=1e-5)
