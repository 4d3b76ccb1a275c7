"""Models by name: ``edm`` (3D diffusion), ``ar`` (autoregressive graph), ``vae`` (graph VAE)."""
from .base import GenerativeModel, list_models, load, model_class, pretrained_path, register
from .checkpoint import CheckpointError

__all__ = ["GenerativeModel", "CheckpointError", "list_models", "load", "model_class", "pretrained_path",
           "register"]
