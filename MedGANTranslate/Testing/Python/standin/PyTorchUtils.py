"""Stand-in for the PyTorch extension's ``PyTorchUtils`` module (fepegar/SlicerPyTorch).

``installTorch`` asks for confirmation like the real one (not in testing mode), records the call in
``slicer._standin.state.torch_calls`` and installs nothing: it returns the already installed ``torch``
module, or None when the user declines or ``state.torch_answer`` is False.
"""
from __future__ import annotations

import importlib.metadata
import logging

import slicer


class PyTorchUtilsLogic:
    def __init__(self) -> None:
        self._torch = None

    @staticmethod
    def torchInstalled() -> bool:
        try:
            importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            return False
        return True

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
        slicer._standin.state.torch_calls.append(
            {"askConfirmation": askConfirmation, "forceComputationBackend": forceComputationBackend,
             "torchVersionRequirement": torchVersionRequirement})
        if askConfirmation and not slicer.app.commandOptions().testingEnabled:
            if not slicer.util.confirmOkCancelDisplay(f"PyTorch will be downloaded and installed (torch{torchVersionRequirement or ''})."):
                logging.info("Installation of PyTorch aborted by user")
                return None
        if not slicer._standin.state.torch_answer:
            return None
        import torch

        return torch

    @property
    def torch(self):
        if self._torch is None:
            import torch

            self._torch = torch
        return self._torch

    def getDevice(self):
        return "cuda" if self.torch.cuda.is_available() else "cpu"
