"""The peers' generators, written for the tests from their published architectures, module for module, so their
state_dict keys are the ones the peers' code saves. Independent of the project's networks on purpose: the
equivalence tests compare two separate readings of each architecture.

- junyanz pytorch-CycleGAN-and-pix2pix (models/networks.py) in its 2D original and in 3D ports;
- davidiommi 3D-CycleGan-Pytorch-MedImaging (models/networks3D.py): replication pads everywhere,
  ``InstanceNorm3d(track_running_stats=True)``, U-Net bias test against ``InstanceNorm2d``;
- ganslate (ganslate/nn/generators): Resnet2D/3D, Unet2D/3D, Vnet2D/3D, with memcnn's additive coupling.
"""
from __future__ import annotations

from copy import deepcopy

import torch
from torch import nn


def _nd(name: str, dims: int):
    return getattr(nn, f"{name}{dims}d")


def norm_factory(norm: str, dims: int, instance_tracks: bool = False):
    if norm == "batch":
        return lambda c: _nd("BatchNorm", dims)(c, affine=True)
    if norm == "instance":
        return lambda c: _nd("InstanceNorm", dims)(c, affine=False, track_running_stats=instance_tracks)
    return lambda c: nn.Identity()


# --- ResNet generators: junyanz (reflect), davidiommi (replicate), ganslate 3D (replicate) / 2D (reflect) -----

class Holder(nn.Module):
    """The peers' generator classes: ``self.model`` holds the layers (and sometimes ``self.encoder`` aliases)."""

    def __init__(self, model, encoder=None):
        super().__init__()
        if encoder is not None:
            self.encoder = nn.ModuleList(encoder)
        self.model = model

    def forward(self, x):
        return self.model(x)


class ResBlock(nn.Module):
    def __init__(self, dim, conv, pad, norm, bias, dropout):
        super().__init__()
        seq = [pad(1), conv(dim, dim, 3, bias=bias), norm(dim), nn.ReLU(True)]
        seq += [nn.Dropout(0.5)] if dropout else []
        seq += [pad(1), conv(dim, dim, 3, bias=bias), norm(dim)]
        self.conv_block = nn.Sequential(*seq)

    def forward(self, x):
        return x + self.conv_block(x)


def resnet(flavour: str, dims: int, cin: int, cout: int, ngf: int = 64, norm: str = "instance", n_blocks: int = 9,
           dropout: bool = False, tracks: bool = False) -> nn.Module:
    """flavour: junyanz | davidiommi | ganslate; ``tracks``: junyanz's older ``InstanceNorm2d(track_running_stats=
    True)`` (davidiommi always tracks)."""
    conv, convt = _nd("Conv", dims), _nd("ConvTranspose", dims)
    if flavour == "junyanz":
        pad = _nd("ReflectionPad", dims)
        bias = {"conv": norm == "instance", "transposed": norm == "instance", "output": True}
        norm_layer = norm_factory(norm, dims, instance_tracks=tracks)
    elif flavour == "davidiommi":
        pad = _nd("ReplicationPad", dims)
        bias = {"conv": norm == "instance", "transposed": norm == "instance", "output": True}
        norm_layer = norm_factory(norm, dims, instance_tracks=True)
    else:
        pad = _nd("ReplicationPad" if dims == 3 else "ReflectionPad", dims)
        bias = {"conv": norm == "instance", "transposed": True, "output": norm == "instance"}
        norm_layer = norm_factory(norm, dims)
    layers = [pad(3), conv(cin, ngf, 7, bias=bias["conv"]), norm_layer(ngf), nn.ReLU(True)]
    for m in (1, 2):
        layers += [conv(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=bias["conv"]), norm_layer(ngf * m * 2),
                   nn.ReLU(True)]
    layers += [ResBlock(ngf * 4, conv, pad, norm_layer, bias["conv"], dropout) for _ in range(n_blocks)]
    encoder = list(layers)
    for m in (4, 2):
        layers += [convt(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=bias["transposed"]),
                   norm_layer(ngf * m // 2), nn.ReLU(True)]
    layers += [pad(3), conv(ngf, cout, 7, bias=bias["output"]), nn.Tanh()]
    return Holder(nn.Sequential(*layers), encoder if flavour == "ganslate" and dims == 2 else None)


# --- U-Net: junyanz, ganslate (same layout), davidiommi (no bias before instance norm in 3D) ----------------

class UnetLevel(nn.Module):
    def __init__(self, outer, inner, dims, norm_layer, bias, cin=None, sub=None, outermost=False, innermost=False,
                 dropout=False):
        super().__init__()
        self.outermost = outermost
        conv, convt = _nd("Conv", dims), _nd("ConvTranspose", dims)
        down = conv(cin or outer, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            seq = [down, sub, nn.ReLU(True), convt(inner * 2, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            seq = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), convt(inner, outer, 4, stride=2, padding=1, bias=bias),
                   norm_layer(outer)]
        else:
            seq = [nn.LeakyReLU(0.2, True), down, norm_layer(inner), sub, nn.ReLU(True),
                   convt(inner * 2, outer, 4, stride=2, padding=1, bias=bias), norm_layer(outer)]
            seq += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def unet(flavour: str, dims: int, cin: int, cout: int, num_downs: int, ngf: int = 64, norm: str = "batch",
         dropout: bool = False) -> nn.Module:
    """flavour: junyanz | ganslate | davidiommi (``num_downs`` >= 5, the published constructors)."""
    bias = norm == "instance" and not (flavour == "davidiommi" and dims == 3)
    norm_layer = norm_factory(norm, dims, instance_tracks=flavour == "davidiommi")
    kw = dict(dims=dims, norm_layer=norm_layer, bias=bias)
    block = UnetLevel(ngf * 8, ngf * 8, innermost=True, **kw)
    for _ in range(num_downs - 5):
        block = UnetLevel(ngf * 8, ngf * 8, sub=block, dropout=dropout, **kw)
    for outer, inner in ((4, 8), (2, 4), (1, 2)):
        block = UnetLevel(ngf * outer, ngf * inner, sub=block, **kw)
    return Holder(UnetLevel(cout, ngf, cin=cin, sub=block, outermost=True, **kw))


# --- ganslate V-Net with memcnn's AdditiveCoupling inside InvertibleModuleWrapper ---------------------------

class Coupling(nn.Module):  # memcnn.AdditiveCoupling: Gm is a copy of Fm
    def __init__(self, fm):
        super().__init__()
        self.Gm = deepcopy(fm)
        self.Fm = fm

    def forward(self, x):
        x1, x2 = torch.chunk(x, 2, dim=1)
        y1 = x1 + self.Fm(x2)
        return torch.cat([y1, x2 + self.Gm(y1)], dim=1)

    def inverse(self, y):
        y1, y2 = torch.chunk(y, 2, dim=1)
        x2 = y2 - self.Gm(y1)
        return torch.cat([y1 - self.Fm(x2), x2], dim=1)


class Wrapper(nn.Module):  # memcnn.InvertibleModuleWrapper
    def __init__(self, fn):
        super().__init__()
        self._fn = fn


class InvBlock(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.invertible_block = Wrapper(Coupling(deepcopy(block)))

    def forward(self, x, inverse=False):
        return self.invertible_block._fn.inverse(x) if inverse else self.invertible_block._fn(x)


class InvSequence(nn.Module):
    def __init__(self, block, n):
        super().__init__()
        self.sequence = nn.Sequential(*[InvBlock(block) for _ in range(n)])

    def forward(self, x, inverse=False):
        for b in (list(self.sequence)[::-1] if inverse else self.sequence):
            x = b(x, inverse)
        return x


def _cnp(layer, c, norm_layer):
    return nn.Sequential(layer, norm_layer(c), nn.PReLU(c))


class VIn(nn.Module):
    def __init__(self, cin, cout, dims, norm_layer, bias):
        super().__init__()
        self.n = cout // cin
        self.conv1 = _nd("Conv", dims)(cin, cout, 5, padding=2, bias=bias)
        self.bn1 = norm_layer(cout)
        self.relu = nn.PReLU(cout)

    def forward(self, x):
        return self.relu(self.bn1(self.conv1(x)) + x.repeat(1, self.n, *([1] * (x.dim() - 2))))


class VDown(nn.Module):
    def __init__(self, cin, n, dims, norm_layer, bias, inverse):
        super().__init__()
        conv, cout = _nd("Conv", dims), 2 * cin
        self.down_conv_ab = _cnp(conv(cin, cout, 2, stride=2, bias=bias), cout, norm_layer)
        if inverse:
            self.down_conv_ba = _cnp(conv(cin, cout, 2, stride=2, bias=bias), cout, norm_layer)
        self.core = InvSequence(_cnp(conv(cout // 2, cout // 2, 5, padding=2, bias=bias), cout // 2, norm_layer), n)
        self.relu = nn.PReLU(cout)

    def forward(self, x, inverse=False):
        d = (self.down_conv_ba if inverse else self.down_conv_ab)(x)
        return self.relu(self.core(d, inverse) + d)


class VUp(nn.Module):
    def __init__(self, cin, cout, n, dims, norm_layer, bias, inverse):
        super().__init__()
        conv, convt = _nd("Conv", dims), _nd("ConvTranspose", dims)
        self.up_conv_ab = _cnp(convt(cin, cout // 2, 2, stride=2, bias=bias), cout // 2, norm_layer)
        if inverse:
            self.up_conv_ba = _cnp(convt(cin, cout // 2, 2, stride=2, bias=bias), cout // 2, norm_layer)
        self.core = InvSequence(_cnp(conv(cout // 2, cout // 2, 5, padding=2, bias=bias), cout // 2, norm_layer), n)
        self.relu = nn.PReLU(cout)

    def forward(self, x, skip, inverse=False):
        cat = torch.cat(((self.up_conv_ba if inverse else self.up_conv_ab)(x), skip), 1)
        return self.relu(self.core(cat, inverse) + cat)


class VOut(nn.Module):
    def __init__(self, cin, cout, dims, norm_layer, bias):
        super().__init__()
        conv = _nd("Conv", dims)
        self.conv1 = conv(cin, cin, 5, padding=2, bias=bias)
        self.bn1 = norm_layer(cin)
        self.relu1 = nn.PReLU(cin)
        self.conv2 = conv(cin, cout, 1)
        self.tanh = nn.Tanh()

    def forward(self, x):
        return self.tanh(self.conv2(self.relu1(self.bn1(self.conv1(x)))))


class Vnet(nn.Module):
    def __init__(self, dims, cin, cout, norm, flc=16, down=(1, 2, 3, 2), up=(2, 2, 1, 1), use_inverse=False):
        super().__init__()
        nl, bias = norm_factory(norm, dims), norm == "instance"
        self.in_ab = VIn(cin, flc, dims, nl, bias)
        if use_inverse:
            self.in_ba = VIn(cin, flc, dims, nl, bias)
        self.out_ab = VOut(flc * 2, cout, dims, nl, bias)
        if use_inverse:
            self.out_ba = VOut(flc * 2, cout, dims, nl, bias)
        self.downs = nn.ModuleList([VDown(flc * 2 ** i, n, dims, nl, bias, use_inverse) for i, n in enumerate(down)])
        self.encoder = nn.ModuleList([self.in_ab]).extend(self.downs)
        f = [2 ** i * 2 for i in reversed(range(len(down)))]
        ups = [VUp(flc * f[0], flc * f[0], up[0], dims, nl, bias, use_inverse)]
        ups += [VUp(flc * f[i], flc * f[i + 1], n, dims, nl, bias, use_inverse) for i, n in enumerate(up[1:])]
        self.ups = nn.ModuleList(ups)

    def forward(self, x, inverse=False):
        out1 = (self.in_ba if inverse else self.in_ab)(x)
        outs = []
        for d in self.downs:
            outs.append(d(outs[-1] if outs else out1, inverse))
        rev = outs[::-1]
        out = rev[0]
        for i, u in enumerate(self.ups):
            out = u(out, out1 if i == len(self.ups) - 1 else rev[i + 1], inverse)
        return (self.out_ba if inverse else self.out_ab)(out)


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Moves every norm layer's affine parameters and running statistics, and every PReLU slope, away from their
    defaults, so a layout difference in any of them shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
                if m.running_mean is not None:
                    m.running_mean.copy_((torch.rand(m.running_mean.shape, generator=g) - 0.5) * 0.4)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
    return net


def save_like_the_peer(net: nn.Module, saved_as: str, folder) -> "tuple[str, str]":
    """Writes the weights as the peer's training code does; returns (file name, card format). ``saved_as``:
    state_dict (junyanz, davidiommi: ``latest_net_G.pth``), dataparallel_legacy (junyanz from a DataParallel run
    under PyTorch < 0.4), ganslate (every network and the optimisers), monai (``model.pt``)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = net.state_dict()
    if saved_as == "ganslate":  # ganslate's save_checkpoint: every network, then the optimisers
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
        torch.save({"G_AB": state, "G_BA": state, "D_A": {"w": torch.zeros(2)}, "D_B": {"w": torch.zeros(2)},
                    "optimizer_G": optimizer.state_dict(), "optimizer_D": optimizer.state_dict()},
                   folder / "1000_checkpoint.pth")
        return "1000_checkpoint.pth", "ganslate"
    if saved_as == "dataparallel_legacy":  # DataParallel's prefix + InstanceNorm buffers of PyTorch < 0.4
        state = {f"module.{k}": v for k, v in state.items()}
        for name, module in net.named_modules():
            if isinstance(module, nn.modules.instancenorm._InstanceNorm):
                state[f"module.{name}.running_mean"] = torch.zeros(module.num_features)
                state[f"module.{name}.running_var"] = torch.ones(module.num_features)
    name = "model.pt" if saved_as == "monai" else "latest_net_G.pth"
    torch.save(state, folder / name)
    return name, "state_dict"
