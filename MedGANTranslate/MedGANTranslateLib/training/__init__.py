"""Training of the built-in generators on digital phantoms (``medgan-translate train``).

Public API: :func:`load_config`, :func:`train`, :func:`evaluate_model` and :func:`describe_model`.
"""
from .config import load_config
from .describe import describe_model
from .evaluate import evaluate_model
from .loop import train

__all__ = ["describe_model", "evaluate_model", "load_config", "train"]
