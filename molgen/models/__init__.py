"""Models by name: ``edm`` (3D diffusion), ``ar`` (autoregressive graph), ``vae`` (graph VAE).

``list_models()`` names the model classes; ``list_pretrained()`` the shipped checkpoints
(``edm-qm9``, ``ar-moses``, ...) with their headline metrics.
"""
from .base import (GenerativeModel, PretrainedInfo, list_models, list_pretrained, load, model_class,
                   pretrained_path, register, resolve_device, resolve_pretrained)
from .checkpoint import CheckpointError

__all__ = ["GenerativeModel", "CheckpointError", "PretrainedInfo", "list_models", "list_pretrained", "load",
           "model_class", "pretrained_path", "register", "resolve_device", "resolve_pretrained"]
