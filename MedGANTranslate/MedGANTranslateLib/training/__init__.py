"""Training of the built-in generators on digital phantoms (``medgan-translate train``).

Public API: :func:`load_config`, :func:`train` and :func:`evaluate_model`.
"""
from .config import load_config
from .evaluate import evaluate_model
from .loop import train

__all__ = ["evaluate_model", "load_config", "train"]
