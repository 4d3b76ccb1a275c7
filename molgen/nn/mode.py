"""Evaluation mode for a model's sampling and scoring, restored afterwards."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` and ``torch.no_grad()`` inside the block; the module's training mode is
    restored afterwards, also when the block raises."""
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was)
