"""One training loop for every model: EMA, adaptive gradient clipping, atomic checkpoints, exact
resume, wall-clock budgets, bf16 on GPUs, DistributedDataParallel under ``torchrun``, CSV logs.

A dataset given to :class:`Trainer` implements ``__len__`` and ``batch(indices) -> dict`` of
tensors; the model implements ``loss(batch) -> (loss, logs)``. Epoch ``e`` visits the data in the
order of a permutation seeded by ``(seed, e)``, and the position in the data follows from the number
of molecules seen (saved with the checkpoint), so a resumed run sees exactly the batches the
uninterrupted run would have seen, and a run resumed with another batch size carries on from where
the last one stopped.

A dataset may instead plan its epochs itself: ``plan(epoch, seed, batch_size) -> list[np.ndarray]``
gives the global batches of an epoch in order (deterministic in its arguments; batches may differ in
size, e.g. grouped by molecule size; ``batch_size`` is the global batch, per-process batch times the
number of processes). Under DDP rank ``r`` takes ``batch[r::world]``. The position (epoch, batch in
the epoch) is saved with the checkpoint and resumes exactly.

The checkpoint is written as a whole (:func:`molgen.models.checkpoint.write_checkpoint`), without
pickle. SIGINT / SIGTERM stop training after the current step and save a checkpoint first.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
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
from ..models.checkpoint import (MAX_FILE_BYTES, CheckpointError, checkpoint_files, convert_legacy_train_state,
                                 encode_train_state, has_train_state, read_train_state, recover_checkpoint,
                                 write_checkpoint)


class BatchDataset(Protocol):
    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]: ...


def ema_with_warmup(decay: float) -> Callable:
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so that a
    short run's average is not dominated by the initial weights."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n_averaged: torch.Tensor | int) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


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
    bf16: bool = True                # autocast to bfloat16 on CUDA (ignored on CPU)
    compile: bool = False            # torch.compile the loss on CUDA (falls back to eager on failure)
    progress: bool = True
    warmup_steps: int = 0            # learning rate rises linearly from 0 to lr over the first N steps
    eval_every_minutes: float | None = None  # also evaluate every M minutes of wall-clock time
    eval_samples: int | None = None  # molecules the evaluator samples (None: the model's default)
    buckets: list[int] | None = None  # size buckets (atoms) for models whose data can plan by size

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
        for name in ("clip_quantile", "bf16", "compile", "progress"):
            need(isinstance(getattr(self, name), bool), name, "true or false")


@dataclass
class _State:
    step: int = 0
    grad_norms: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    samples: int = -1                # molecules seen (all ranks); -1: unknown (a state saved before this field)
    epoch: int = 0                   # the position in a planned dataset (one with plan()): epoch,
    batch_index: int = 0             # the next batch of its plan,
    plan_batch_size: int = 0         # and the global batch size the plan was made for (0: none yet)


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
    """Train ``model`` on ``dataset``, writing checkpoints to ``out_dir`` (resumed if present).

    A folder holding trained weights but no train state is refused: training would replace
    weights it cannot continue. A folder with only a legacy ``train_state.pt`` is converted."""

    def __init__(self, model: GenerativeModel, dataset: BatchDataset, config: TrainConfig,
                 out_dir: str | Path, device: str | torch.device = "cpu",
                 evaluate: Callable[[GenerativeModel], dict[str, float]] | None = None,
                 extra_metrics: dict[str, Any] | None = None) -> None:
        self.cfg = config
        self.device = torch.device(device)
        self.out = Path(out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"output folder {self.out} is a file, not a folder")
        self.rank, self.world = init_distributed(self.device)
        self.model = model.to(self.device)
        if self.device.type == "cuda" and callable(getattr(dataset, "to", None)):
            dataset = dataset.to(self.device)  # a few MB: batches are cut on the GPU, no host copies per step
        self.dataset = dataset
        self.evaluate = evaluate
        self.extra_metrics = extra_metrics or {}
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           amsgrad=True)
        self.ema = AveragedModel(model)  # the averaged copy and its n_averaged; updated by _ema_update
        self._ema_step = ema_with_warmup(config.ema_decay)
        self._ema_updates = 0  # host copy of ema.n_averaged (reading the tensor would sync the GPU)
        self._norms = torch.zeros(50, device=self.device)  # recent clipped gradient norms, a ring buffer
        self._n_norms = 0
        self._diverged = torch.zeros((), dtype=torch.bool, device=self.device)
        self.state = _State()
        self.curve: list[dict[str, float]] = []
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)
        self._plan_key: tuple[int, int] | None = None
        self._plan: list[np.ndarray] = []
        self._position: tuple[int, int, int] | None = None  # plan position after the batch being taken
        self._signal: int | None = None
        self._warned_size = False
        self.wrapped: torch.nn.Module = (DistributedDataParallel(model) if self.world > 1 else model)
        self._loss_fn = self.wrapped if self.world > 1 else model.loss
        self._compiled = config.compile and self.device.type == "cuda"
        if self._compiled:
            self._loss_fn = torch.compile(self._loss_fn)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if self.rank == 0:
            prepare_run_folder(self.out)
        if self.world > 1:
            dist.barrier()
        if has_train_state(self.out):
            self._resume()
        elif (self.out / "weights.safetensors").exists():
            raise CheckpointError(refuse_message(self.out))

    # --- checkpoints -------------------------------------------------------------------------
    def _resume(self) -> None:
        st, _ = read_train_state(self.out)
        try:
            self.model.load_state_dict(st["model"])
            self.ema.load_state_dict(st["ema"])
            self.optimizer.load_state_dict(st["optimizer"])
            self.state = _State(**st["state"])
            self.curve = list(st.get("curve", []))
            rng_cpu = st["rng_cpu"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(f"the train state in {self.out} does not fit this model or trainer "
                                  f"({exc.__class__.__name__}: {first})") from None
        for group in self.optimizer.param_groups:  # the settings of this run (equal when resuming as saved)
            group["lr"] = self.cfg.lr
            group["weight_decay"] = self.cfg.weight_decay
        self._ema_updates = int(self.ema.n_averaged)
        self._load_norms(self.state.grad_norms)
        if self.state.samples < 0:  # older train_state: the batch size was constant until then
            saved = st.get("train_config", {}).get("batch_size", self.cfg.batch_size)
            self.state.samples = self.state.step * saved * self.world
        torch.set_rng_state(rng_cpu.cpu())
        if self.device.type == "cuda" and st.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(st["rng_cuda"].cpu())
        if self.rank == 0:
            tqdm.write(f"resumed from {self.out} at step {self.state.step}")
            self._trim_log(self.out / "log.csv", self.state.step)

    def _load_norms(self, norms: list[float]) -> None:
        recent = [float(v) for v in norms][-50:]
        self._norms.zero_()
        if recent:
            self._norms[:len(recent)] = torch.tensor(recent, dtype=self._norms.dtype)
        self._n_norms = len(recent)

    def _saved_norms(self) -> list[float]:
        """The ring buffer as the list of the last (up to) 50 norms, oldest first."""
        values = self._norms.tolist()
        if self._n_norms <= 50:
            return values[:self._n_norms]
        start = self._n_norms % 50  # the oldest entry, written over next
        return values[start:] + values[:start]

    def train_state(self) -> dict[str, Any]:
        """Everything needed to resume exactly (tensors and JSON values only)."""
        self.state.grad_norms = self._saved_norms()
        return {
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "state": asdict(self.state), "curve": self.curve,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "train_config": asdict(self.cfg),
        }

    def save(self) -> None:
        """Write the train state and the usable checkpoint (EMA weights) as one atomic checkpoint
        (rank 0 only): a crash at any point leaves the folder at the old or the new step."""
        self._check_finite()  # never save weights that a NaN step has reached
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        files = encode_train_state(self.train_state())
        metrics = {**self.extra_metrics, "steps": self.state.step,
                   "epochs": self.epochs(),
                   "train_seconds": round(self.state.wall_seconds, 1), "train_config": asdict(self.cfg),
                   "learning_curve": self.curve}
        old = self.out / "metrics.json"
        if old.exists():  # keep evaluation results written by other tools
            try:
                prev = json.loads(old.read_text())
                if not isinstance(prev, dict):
                    raise ValueError("not a JSON object")
                metrics = {**prev, **metrics}
            except (ValueError, UnicodeDecodeError) as exc:
                tqdm.write(f"warning: {old} is unreadable ({exc.__class__.__name__}); writing a new one")
        ema_weights = self.ema.module.state_dict()
        files.update(checkpoint_files(self.model.name, self.model.config, ema_weights, metrics))
        big = [f"{name} ({len(data) / 2**20:.1f} MiB)" for name, data in files.items() if len(data) >= MAX_FILE_BYTES]
        if big and not self._warned_size:  # the train state is sharded; the weights file is one file
            tqdm.write(f"warning: {', '.join(big)} in {self.out} over the {MAX_FILE_BYTES // 2**20} MiB per-file limit")
            self._warned_size = True
        write_checkpoint(self.out, files, step=self.state.step)

    def epochs(self) -> float:
        """Passes over the training set so far (from the molecules seen, so batch-size changes count)."""
        return max(self.state.samples, 0) / max(len(self.dataset), 1)

    # --- data order ----------------------------------------------------------------------------
    def _batches_per_epoch(self) -> int:
        return max(len(self.dataset) // (self.cfg.batch_size * self.world), 1)

    def _next_indices(self) -> np.ndarray:
        """This rank's share of the next global batch, from the molecules seen so far (or from the
        dataset's plan, when it has one)."""
        if hasattr(self.dataset, "plan"):
            return self._next_planned()
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
        self._position = None
        return self._perm[start:start + b]

    def _epoch_plan(self, epoch: int, global_batch: int) -> list[np.ndarray]:
        if self._plan_key != (epoch, global_batch):
            plan = [np.asarray(b, dtype=np.int64) for b in self.dataset.plan(epoch, self.cfg.seed, global_batch)]
            if not plan or any(len(b) < self.world for b in plan):
                raise ValueError(f"the dataset's plan for epoch {epoch} is empty or has a batch smaller than "
                                 f"the {self.world} process(es)")
            self._plan_key, self._plan = (epoch, global_batch), plan
        return self._plan

    def _next_planned(self) -> np.ndarray:
        st = self.state
        global_batch = self.cfg.batch_size * self.world
        epoch, index = st.epoch, st.batch_index
        if st.plan_batch_size == 0 and st.samples > 0:  # a state from a run without a plan
            epoch, index = -(-st.samples // max(len(self.dataset), 1)), 0
        elif st.plan_batch_size not in (0, global_batch) and index > 0:  # batch size changed: next epoch
            epoch, index = epoch + 1, 0
        plan = self._epoch_plan(epoch, global_batch)
        if index >= len(plan):
            epoch, index = epoch + 1, 0
            plan = self._epoch_plan(epoch, global_batch)
        batch = plan[index]
        self._position = (epoch, index + 1, len(batch))
        return batch[self.rank::self.world]

    # --- one step ------------------------------------------------------------------------------
    def _clip(self) -> torch.Tensor:
        """EDM's adaptive clipping: bound 1.5 x mean + 2 x std of the last 50 clipped norms (a fixed
        ``clip_max`` before 50 exist), computed on the device so that no step waits for the GPU."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if self.cfg.clip_quantile and self._n_norms >= 50:
            bound = 1.5 * self._norms.mean() + 2.0 * self._norms.std(unbiased=False)
        else:
            bound = torch.tensor(self.cfg.clip_max, device=norm.device)
        torch.nn.utils.clip_grads_with_norm_(params, bound, norm)
        finite = torch.isfinite(norm)
        slot = self._n_norms % 50
        self._norms[slot] = torch.where(finite, torch.minimum(norm, bound).to(self._norms.dtype), self._norms[slot])
        # a non-finite norm is not recorded; counting it on the host would need a sync, so the
        # slot keeps its old value and the count still advances (only after a divergence)
        self._n_norms += 1
        return norm

    def _check_finite(self) -> None:
        if bool(self._diverged):
            raise TrainingDiverged(
                f"loss became NaN or infinite by step {self.state.step}; the last good checkpoint is in {self.out}")

    def _ema_update(self) -> None:
        """The EMA step of ``AveragedModel.update_parameters`` with the warm-up decay, without its
        host-side test of ``n_averaged`` (a GPU sync per step)."""
        ema_params = [p.detach() for p in self.ema.module.parameters()]
        params = [p.detach() for p in self.model.parameters()]
        if self._ema_updates == 0:
            torch._foreach_copy_(ema_params, params)
        else:
            self._ema_step(ema_params, params, self._ema_updates)
        self.ema.n_averaged += 1
        self._ema_updates += 1

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): a linear warm-up, then ``lr``."""
        if self.cfg.warmup_steps <= 0:
            return self.cfg.lr
        return self.cfg.lr * min(1.0, (step + 1) / self.cfg.warmup_steps)

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
        if self.device.type != "cuda":  # free on a CPU: stop at the step itself
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at step {self.state.step}; "
                                       f"the last good checkpoint is in {self.out}")
        else:  # on a GPU the flag is read at log, evaluation and checkpoint time
            self._diverged |= ~torch.isfinite(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip()
        if self.cfg.warmup_steps > 0:
            lr = self.lr_at(self.state.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.optimizer.step()
        self._ema_update()
        self.state.step += 1
        if self._position is not None:  # a planned dataset: its position, and the molecules of this batch
            self.state.epoch, self.state.batch_index, seen = self._position
            self.state.plan_batch_size = self.cfg.batch_size * self.world
        else:
            seen = min(self.cfg.batch_size * self.world, len(self.dataset))
        self.state.samples = max(self.state.samples, 0) + seen
        # tensors: read at log time, so that a GPU step does not wait for its own results
        return {"loss": loss.detach(), "grad_norm": grad_norm.detach(),
                **{k: (v.detach() if torch.is_tensor(v) else torch.tensor(float(v))) for k, v in logs.items()}}

    # --- the loop ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is not None:  # a second signal: stop now (the checkpoint on disk is whole)
            raise KeyboardInterrupt
        self._signal = signum
        if self.rank == 0:
            tqdm.write(f"{signal.Signals(signum).name}: saving a checkpoint after this step "
                       f"(send it again to stop at once)")

    def _should_stop(self, deadline: float | None) -> bool:
        """A signal or the wall-clock budget; under DDP all ranks stop at the same step."""
        stop = self._signal is not None or (deadline is not None and time.monotonic() >= deadline)
        if self.world > 1:
            flag = torch.tensor([int(stop)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def fit(self) -> dict[str, Any]:
        """Train to ``max_steps`` (a total step count) or for ``max_minutes``, whichever comes first.

        On SIGINT / SIGTERM: finish the step, save a checkpoint, raise :class:`TrainingInterrupted`."""
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
        running: dict[str, list[torch.Tensor]] = {}
        eval_period = 60 * cfg.eval_every_minutes if cfg.eval_every_minutes else None
        next_eval = time.monotonic() + eval_period if eval_period else None
        self._signal = None
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                if target is not None and self.state.step >= target:
                    break
                if self._should_stop(deadline):
                    break
                logs = self.step()
                for k, v in logs.items():
                    running.setdefault(k, []).append(v)
                bar.update(1)
                now = time.monotonic()
                self.state.wall_seconds += now - t_last
                t_last = now
                if self.state.step % cfg.log_every == 0:
                    self._check_finite()
                    row = {"step": self.state.step, "wall_seconds": round(self.state.wall_seconds, 2),
                           **{k: float(torch.stack([x.float() for x in v]).mean()) for k, v in running.items()}}
                    running.clear()
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    if self.rank == 0:
                        self._append_csv(log_path, row)
                due = cfg.eval_every and self.state.step % cfg.eval_every == 0
                if next_eval is not None and time.monotonic() >= next_eval:
                    due, next_eval = True, time.monotonic() + eval_period
                if due and self._signal is None:
                    self._check_finite()
                    self._run_eval()
                if self.state.step % cfg.checkpoint_every == 0:
                    self.save()
            if self._signal is not None:
                self.save()
                dataset = self.extra_metrics.get("dataset")
                resume = f"python -m molgen.train --model {self.model.name}" + (
                    f" --dataset {dataset}" if isinstance(dataset, str) else "") + f" --resume {self.out}"
                raise TrainingInterrupted(f"interrupted at step {self.state.step}; checkpoint saved in {self.out}, "
                                          f"resume with {resume}", self._signal)
            if self.evaluate is not None and (not self.curve or self.curve[-1]["step"] != self.state.step):
                self._run_eval()
            self.save()
        finally:
            bar.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        return {"steps": self.state.step, "curve": self.curve}

    def _run_eval(self) -> None:
        if self.evaluate is None or self.rank != 0:
            return
        import inspect

        if "out_dir" in inspect.signature(self.evaluate).parameters:  # it keeps its samples in the run folder
            result = self.evaluate(self.ema.module, out_dir=self.out, step=self.state.step)
        else:
            result = self.evaluate(self.ema.module)
        row = {"step": self.state.step, "epochs": round(self.epochs(), 3),
               "wall_seconds": round(self.state.wall_seconds, 1), **result}
        self.curve.append(row)
        tqdm.write("eval " + json.dumps(row))

    @staticmethod
    def _trim_log(path: Path, step: int) -> None:
        """Drop log rows past the resumed step (written after the checkpoint by a run that died)."""
        if not path.exists():
            return
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        keep = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
        if rows and len(keep) != len(rows) - 1:
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("w", newline="") as f:
                csv.writer(f).writerows([rows[0], *keep])
            os.replace(tmp, path)

    @staticmethod
    def _append_csv(path: Path, row: dict[str, float]) -> None:
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def refuse_message(folder: Path) -> str:
    return (f"{folder} holds trained weights (weights.safetensors) but no train state to resume from, and "
            f"training there would replace them; choose another --out folder")


def prepare_run_folder(folder: str | Path) -> None:
    """Before training in ``folder``: finish or drop a checkpoint write a crash interrupted, and
    convert a legacy pickle-based ``train_state.pt`` (loaded with ``weights_only=True``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    recover_checkpoint(folder)
    if convert_legacy_train_state(folder):
        tqdm.write(f"converted {folder}/train_state.pt to the safetensors + JSON train state (the .pt is removed)")
