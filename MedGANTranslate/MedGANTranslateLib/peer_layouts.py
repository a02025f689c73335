"""What each peer's code builds and how its test script runs it: the rules that decide between fitting layouts.

Several layouts often fit one checkpoint's keys exactly, and they need not compute the same thing: padding holds
no weights (junyanz pads a ResNet by reflection, davidiommi and 3D ganslate by replication), each peer puts biases
on different layers for the same norm, and davidiommi's test script never calls ``eval()``. These rules, read
from the peers' own code, are kept here apart from the search (:mod:`.architecture_inference`), so that a new
peer is a new row of rules rather than new logic.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .layers import bias_rule

#: The peers whose layouts are built in.
PEERS = ("junyanz", "davidiommi", "ganslate")
#: The peers that publish each built-in layout.
PUBLISHERS = {"resnet_generator": PEERS, "unet_generator": PEERS, "vnet_generator": ("ganslate",)}


def peer_bias(framework: str, name: str, norm: str) -> Dict[str, bool]:
    """Which layer kinds have a bias in the peer's own code, for its norm."""
    instance = norm == "instance"
    if framework == "ganslate" and name == "resnet_generator":
        return {"conv": instance, "transposed": True, "output": instance}
    if framework == "davidiommi" and name == "unet_generator":
        return {"conv": False, "transposed": False, "output": True}
    return bias_rule(norm)


def peer_fits(framework: str, name: str, variant: Mapping[str, Any]) -> bool:
    """Whether a fitting variant is what the peer's code builds: its bias rule, its aliases, its dimensions."""
    dims = variant.get("spatial_dims", 3)
    if framework == "davidiommi" and dims != 3:
        return False
    if dict(variant["bias"]) != peer_bias(framework, name, variant["norm"]):
        return False
    if name == "resnet_generator":
        return bool(variant.get("encoder_alias")) == (framework == "ganslate" and dims == 2)
    return True


def peer_paddings(framework: str, dims: int) -> Tuple[str, str]:
    """(residual block padding, stem/output padding): the one thing about a ResNet its weights cannot show."""
    if framework == "junyanz" or (framework == "ganslate" and dims == 2):
        return "reflect", "reflect"
    return "replicate", "replicate"


def peer_forward(framework: str, active_dropout: bool, norm_statistics: Optional[str] = None,
                 dropout: bool = False) -> Dict[str, Any]:
    """The card's ``architecture.forward``: how the peer's test script runs the network. davidiommi's never calls
    eval() (batch statistics of each window, dropout on); ``norm_statistics`` and ``dropout`` (the flags)
    override."""
    statistics = "window" if framework == "davidiommi" else "running"
    active = active_dropout and framework == "davidiommi"
    if norm_statistics:
        statistics = norm_statistics
    if dropout:
        active = True
    forward: Dict[str, Any] = {}
    if statistics != "running":
        forward["norm_statistics"] = statistics
    if active:
        forward["dropout"] = True
    return forward


def peer_script_notes(name: str, frameworks: Sequence[str], architecture: Mapping[str, Any],
                      norm_statistics_given: bool, dropout_given: bool) -> List[str]:
    """What the import tells the user about the peers' test scripts, where the card's forward mode may not be how
    they ran the network."""
    notes: List[str] = []
    params, forward = architecture["params"], architecture.get("forward", {})
    if "junyanz" in frameworks and not norm_statistics_given and (
            params["norm"] == "batch" or params.get("use_dropout") or name == "unet_generator"):
        notes.append("junyanz's test.py calls eval() only with --eval: if you ran it without, the network used each "
                     "image's batch statistics (and active dropout); import again with --norm-statistics window "
                     "(and --dropout for a network with dropout)")
    if forward.get("norm_statistics") == "window" and "davidiommi" in frameworks and not norm_statistics_given:
        notes.append("davidiommi's test.py never calls eval(): norm layers use each window's own statistics "
                     "(architecture.forward.norm_statistics window)")
    if forward.get("dropout"):
        notes.append("dropout stays active (architecture.forward.dropout): the output varies from run to run, "
                     "so models check cannot match it exactly")
    if name == "unet_generator" and "davidiommi" in frameworks and not dropout_given:
        notes.append("a U-Net's dropout layers hold no weights: if davidiommi's network was trained with dropout, "
                     "import again with --dropout")
    return notes
