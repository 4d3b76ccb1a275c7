"""One training loop for every model: EMA, adaptive gradient clipping, atomic checkpoints, exact
resume, wall-clock budgets, bf16 on GPUs, DistributedDataParallel under ``torchrun``, CSV logs.

A dataset given to :class:`Trainer` implements ``__len__`` and ``batch(indices) -> dict`` of
tensors; the model implements ``loss(batch) -> (loss, logs)``. Epoch ``e`` visits the data in the
order of a permutation seeded by ``(seed, e)``, and the position in the data follows from the number
of molecules seen (saved with the checkpoint), so a resumed run sees exactly the batches the
uninterrupted run would have seen, and a run resumed with another batch size carries on from where
the last one stopped.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ..models.base import GenerativeModel


class BatchDataset(Protocol):
    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]: ...


def ema_with_warmup(decay: float) -> Callable:
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so that a
    short run's average is not dominated by the initial weights."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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
    bf16: bool = True                # autocast to bfloat16 on CUDA (ignored on CPU)
    compile: bool = False            # torch.compile the loss on CUDA (falls back to eager on failure)
    progress: bool = True


@dataclass
class _State:
    step: int = 0
    grad_norms: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    samples: int = -1                # molecules seen (all ranks); -1: unknown (a state saved before this field)


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group set up by torchrun (gloo on CPU, nccl on CUDA); no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _dist_info()


class Trainer:
    """Train ``model`` on ``dataset``, writing checkpoints to ``out_dir`` (resumed if present)."""

    def __init__(self, model: GenerativeModel, dataset: BatchDataset, config: TrainConfig,
                 out_dir: str | Path, device: str | torch.device = "cpu",
                 evaluate: Callable[[GenerativeModel], dict[str, float]] | None = None,
                 extra_metrics: dict[str, Any] | None = None) -> None:
        self.cfg = config
        self.device = torch.device(device)
        self.rank, self.world = init_distributed(self.device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.out = Path(out_dir)
        self.evaluate = evaluate
        self.extra_metrics = extra_metrics or {}
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           amsgrad=True)
        self.ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(config.ema_decay))
        self.state = _State()
        self.curve: list[dict[str, float]] = []
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)
        self.wrapped: torch.nn.Module = (DistributedDataParallel(model) if self.world > 1 else model)
        self._loss_fn = self.wrapped if self.world > 1 else model.loss
        self._compiled = config.compile and self.device.type == "cuda"
        if self._compiled:
            self._loss_fn = torch.compile(self._loss_fn)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if (self.out / "train_state.pt").exists():
            self._resume()

    # --- checkpoints -------------------------------------------------------------------------
    def _resume(self) -> None:
        st = torch.load(self.out / "train_state.pt", map_location=self.device, weights_only=False)
        self.model.load_state_dict(st["model"])
        self.ema.load_state_dict(st["ema"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.state = _State(**st["state"])
        if self.state.samples < 0:  # older train_state: the batch size was constant until then
            saved = st.get("train_config", {}).get("batch_size", self.cfg.batch_size)
            self.state.samples = self.state.step * saved * self.world
        self.curve = st.get("curve", [])
        torch.set_rng_state(st["rng_cpu"].cpu())
        if self.device.type == "cuda" and st.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(st["rng_cuda"].cpu())
        if self.rank == 0:
            tqdm.write(f"resumed from {self.out} at step {self.state.step}")

    def save(self) -> None:
        """Write train_state.pt and the usable checkpoint (EMA weights) atomically (rank 0 only)."""
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        st = {
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "state": asdict(self.state), "curve": self.curve,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "train_config": asdict(self.cfg),
        }
        tmp = self.out / "train_state.pt.tmp"
        torch.save(st, tmp)
        os.replace(tmp, self.out / "train_state.pt")
        metrics = {**self.extra_metrics, "steps": self.state.step,
                   "epochs": self.epochs(),
                   "train_seconds": round(self.state.wall_seconds, 1), "train_config": asdict(self.cfg),
                   "learning_curve": self.curve}
        old = self.out / "metrics.json"
        if old.exists():  # keep evaluation results written by other tools
            prev = json.loads(old.read_text())
            metrics = {**prev, **metrics}
        ema_weights = self.ema.module.state_dict()
        self.model.save_pretrained(self.out, metrics=metrics, weights=ema_weights)

    def epochs(self) -> float:
        """Passes over the training set so far (from the molecules seen, so batch-size changes count)."""
        return max(self.state.samples, 0) / max(len(self.dataset), 1)

    # --- data order ----------------------------------------------------------------------------
    def _batches_per_epoch(self) -> int:
        return max(len(self.dataset) // (self.cfg.batch_size * self.world), 1)

    def _next_indices(self) -> np.ndarray:
        """This rank's share of the next global batch, from the molecules seen so far."""
        b = self.cfg.batch_size
        global_batch = b * self.world
        per_epoch = self._batches_per_epoch() * global_batch  # the tail that fills no batch is skipped
        epoch, offset = divmod(max(self.state.samples, 0), per_epoch)
        if offset + global_batch > per_epoch:  # after a batch-size change: start the next epoch
            epoch, offset = epoch + 1, 0
        if self._perm_epoch != epoch:  # one permutation per epoch, cached
            self._perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.dataset))
            self._perm_epoch = epoch
        start = offset + self.rank * b
        return self._perm[start:start + b]

    # --- one step ------------------------------------------------------------------------------
    def _clip(self) -> float:
        hist = self.state.grad_norms
        if self.cfg.clip_quantile and len(hist) >= 50:
            bound = 1.5 * float(np.mean(hist)) + 2.0 * float(np.std(hist))
        else:
            bound = self.cfg.clip_max
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), bound))
        if math.isfinite(norm):
            hist.append(min(norm, bound))
            del hist[:-50]
        return norm

    def step(self) -> dict[str, float]:
        self.model.train()
        batch_ids = self._next_indices()
        batch = self.dataset.batch(batch_ids)
        batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        use_bf16 = self.cfg.bf16 and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            try:
                loss, logs = self._loss_fn(batch)
            except Exception as exc:  # a torch.compile failure: report once, continue in eager mode
                if not self._compiled:
                    raise
                self._compiled = False
                tqdm.write(f"torch.compile failed ({exc.__class__.__name__}: {str(exc)[:200]}); running eagerly")
                self._loss_fn = self.wrapped if self.world > 1 else self.model.loss
                loss, logs = self._loss_fn(batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {self.state.step}; the last good checkpoint is in {self.out}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip()
        self.optimizer.step()
        self.ema.update_parameters(self.model)
        self.state.step += 1
        seen = min(self.cfg.batch_size * self.world, len(self.dataset))
        self.state.samples = max(self.state.samples, 0) + seen
        return {"loss": float(loss.detach()), "grad_norm": grad_norm, **{k: float(v) for k, v in logs.items()}}

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        start_step = self.state.step
        target = cfg.max_steps if cfg.max_steps is not None else None
        deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else None
        if target is None and deadline is None:
            raise ValueError("give max_steps or max_minutes")
        log_path = self.out / "log.csv"
        self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=(target - start_step) if target else None, disable=not cfg.progress or self.rank != 0,
                   desc=f"train {self.model.name}", unit="step", dynamic_ncols=True)
        t_last = time.monotonic()
        running: dict[str, list[float]] = {}
        try:
            while True:
                if target is not None and self.state.step >= target:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                logs = self.step()
                for k, v in logs.items():
                    running.setdefault(k, []).append(v)
                bar.update(1)
                now = time.monotonic()
                self.state.wall_seconds += now - t_last
                t_last = now
                if self.state.step % cfg.log_every == 0:
                    row = {"step": self.state.step, "wall_seconds": round(self.state.wall_seconds, 2),
                           **{k: float(np.mean(v)) for k, v in running.items()}}
                    running.clear()
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    if self.rank == 0:
                        self._append_csv(log_path, row)
                if cfg.eval_every and self.state.step % cfg.eval_every == 0:
                    self._run_eval()
                if self.state.step % cfg.checkpoint_every == 0:
                    self.save()
        finally:
            bar.close()
        if self.evaluate is not None and (not self.curve or self.curve[-1]["step"] != self.state.step):
            self._run_eval()
        self.save()
        return {"steps": self.state.step, "curve": self.curve}

    def _run_eval(self) -> None:
        if self.evaluate is None or self.rank != 0:
            return
        result = self.evaluate(self.ema.module)
        row = {"step": self.state.step, "epochs": round(self.epochs(), 3),
               "wall_seconds": round(self.state.wall_seconds, 1), **result}
        self.curve.append(row)
        tqdm.write("eval " + json.dumps(row))

    @staticmethod
    def _append_csv(path: Path, row: dict[str, float]) -> None:
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
