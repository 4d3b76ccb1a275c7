"""What the training loop takes: a dataset protocol, its settings (checked on construction) and the
two ways a run ends early."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch


class BatchDataset(Protocol):
    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]: ...


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped training; a checkpoint of the last finished step was saved."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass
class TrainConfig:
    """Optimisation settings (saved in the checkpoint's train_state and metrics.json)."""

    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-12
    max_steps: int | None = None
    max_minutes: float | None = None
    ema_decay: float = 0.999          # with a warm-up: min(ema_decay, (1 + n) / (10 + n)) after n updates
    clip_quantile: bool = True       # EDM-style adaptive clipping: 1.5 * mean + 2 * std of recent norms
    clip_max: float = 10.0           # clipping bound before enough history exists
    checkpoint_every: int = 1000
    log_every: int = 50
    eval_every: int | None = None
    seed: int = 0
    bf16: bool = True                # autocast to bfloat16 on CUDA
    cpu_bf16: bool = False           # autocast to bfloat16 on a CPU too (native bf16 only: AVX512-BF16 or AMX)
    compile: bool = False            # torch.compile the loss on CUDA (falls back to eager on failure)
    progress: bool = True
    warmup_steps: int = 0            # learning rate rises linearly from 0 to lr over the first N steps
    eval_every_minutes: float | None = None  # also evaluate every M minutes of wall-clock time
    eval_samples: int | None = None  # molecules the evaluator samples (None: the model's default)
    buckets: list[int] | None = None  # size buckets (atoms) for models whose data can plan by size
    max_molecules: int | None = None  # ar: train on a fixed random subset (seed 0) of this many training molecules
    amsgrad: bool = True             # AdamW with AMSGrad's running maximum (False: a quarter less train state)
    encoded_data: str | None = None  # ar, vae: a folder with the encoded training set (train.npz, heldout.npz): no RDKit

    def __post_init__(self) -> None:
        """Check every setting; a bad one is a ValueError naming it and its allowed range."""
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(is_num(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a finite number >= 0")
        need(self.max_steps is None or (is_int(self.max_steps) and self.max_steps >= 1), "max_steps",
             "an integer >= 1 (a total step count)")
        need(self.max_minutes is None or (is_num(self.max_minutes) and self.max_minutes > 0), "max_minutes",
             "a finite number > 0")
        need(is_num(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay", "a number in [0, 1)")
        need(is_num(self.clip_max) and self.clip_max > 0, "clip_max", "a finite number > 0")
        need(is_int(self.checkpoint_every) and self.checkpoint_every >= 1, "checkpoint_every", "an integer >= 1")
        need(is_int(self.log_every) and self.log_every >= 1, "log_every", "an integer >= 1")
        need(self.eval_every is None or (is_int(self.eval_every) and self.eval_every >= 1), "eval_every",
             "an integer >= 1 (or None: evaluate at the end only)")
        need(is_int(self.seed) and 0 <= self.seed <= 2**63 - 1, "seed", "an integer in 0..2**63-1")
        need(is_int(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps", "an integer >= 0")
        need(self.eval_every_minutes is None or (is_num(self.eval_every_minutes) and self.eval_every_minutes > 0),
             "eval_every_minutes", "a finite number > 0 (or None)")
        need(self.eval_samples is None or (is_int(self.eval_samples) and self.eval_samples >= 1), "eval_samples",
             "an integer >= 1 (or None)")
        need(self.buckets is None or (isinstance(self.buckets, (list, tuple)) and len(self.buckets) > 0
                                      and all(is_int(b) and b >= 1 for b in self.buckets)),
             "buckets", "a list of atom counts >= 1 (or None)")
        need(self.max_molecules is None or (is_int(self.max_molecules) and self.max_molecules >= 1),
             "max_molecules", "an integer >= 1 (or None: the whole training split)")
        need(self.encoded_data is None or (isinstance(self.encoded_data, str) and bool(self.encoded_data)),
             "encoded_data", "a folder path (or None: encode the dataset's SMILES)")
        for name in ("clip_quantile", "bf16", "cpu_bf16", "compile", "progress", "amsgrad"):
            need(isinstance(getattr(self, name), bool), name, "true or false")
