"""Shared fixtures: tiny real models written to disk."""
from __future__ import annotations

from typing import Callable

import pytest
import torch

from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.networks import build_network

torch.set_num_threads(1)


@pytest.fixture
def make_model(tmp_path) -> Callable[..., "object"]:
    """Writes a tiny model folder with seeded random weights and returns its card."""

    def factory(name: str = "tiny", fmt: str = "safetensors", seed: int = 0, edit=None, **card_kwargs):
        data = tiny_card_data(model_id=name.replace("_", "-"), **card_kwargs)
        if edit is not None:
            edit(data)
        torch.manual_seed(seed)
        net = build_network(data["architecture"]) if data["architecture"]["type"] in ("builtin", "monai") else None
        return save_model_folder(tmp_path / "models" / name, data, network=net, fmt=fmt)

    return factory

