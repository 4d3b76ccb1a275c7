"""One training loop for every model: EMA, adaptive gradient clipping, atomic checkpoints, exact
resume, wall-clock budgets, bf16 on GPUs, DistributedDataParallel under ``torchrun``, CSV logs.

A dataset given to :class:`Trainer` implements ``__len__`` and ``batch(indices) -> dict`` of
tensors; the model implements ``loss(batch) -> (loss, logs)``. The position in the data (molecules
seen, or epoch and batch of a dataset that plans its epochs with ``plan(epoch, seed, batch_size) ->
list[np.ndarray]``, ``batch_size`` being the global batch) is saved with the checkpoint, so a resumed
run sees exactly the batches the uninterrupted run would have seen.

The data order is :class:`~molgen.training.data_order.DataOrder`'s; the settings are
:class:`~molgen.training.config.TrainConfig`. The checkpoint is written as a whole (:func:`molgen.models.checkpoint.write_checkpoint`), without
pickle. SIGINT / SIGTERM stop training after the current step and save a checkpoint first.
"""
from __future__ import annotations

import inspect
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ..models.base import GenerativeModel
from ..models.card import retire_evaluations, upgrade_card, validate_card
from ..models.checkpoint import MAX_FILE_BYTES, CheckpointError, checkpoint_files, has_train_state, write_checkpoint
from ..models.train_state import EMA_IN_WEIGHTS, encode_train_state, read_train_state
from .config import BatchDataset, TrainConfig, TrainingDiverged, TrainingInterrupted
from .data_order import DataOrder
from .optim import AdaptiveClipper, ema_with_warmup
from .run_folder import append_csv, prepare_run_folder, refuse_message, trim_log


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
                                           amsgrad=config.amsgrad)
        self.ema = AveragedModel(model)  # the averaged copy and its n_averaged; updated by _ema_update
        self._ema_step = ema_with_warmup(config.ema_decay)
        self._ema_updates = 0  # host copy of ema.n_averaged (reading the tensor would sync the GPU)
        self.clipper = AdaptiveClipper(config.clip_max, adaptive=config.clip_quantile, device=self.device)
        self._diverged = torch.zeros((), dtype=torch.bool, device=self.device)
        self.state = _State()
        self.curve: list[dict[str, float]] = []
        self.order = DataOrder(dataset, config.batch_size, config.seed, self.rank, self.world)
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
        self.clipper.load(self.state.grad_norms)
        if self.state.samples < 0:  # older train_state: the batch size was constant until then
            saved = st.get("train_config", {}).get("batch_size", self.cfg.batch_size)
            self.state.samples = self.state.step * saved * self.world
        torch.set_rng_state(rng_cpu.cpu())
        if self.device.type == "cuda" and st.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(st["rng_cuda"].cpu())
        if self.rank == 0:
            tqdm.write(f"resumed from {self.out} at step {self.state.step}")
            trim_log(self.out / "log.csv", self.state.step)

    def train_state(self) -> dict[str, Any]:
        """Everything needed to resume exactly (tensors and JSON values only)."""
        self.state.grad_norms = self.clipper.saved()
        return {
            # the EMA module is written once, as weights.safetensors (save()); read_train_state puts it back
            "model": self.model.state_dict(), "ema": {"n_averaged": self.ema.n_averaged}, EMA_IN_WEIGHTS: True,
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
        if old.exists():  # keep what other tools wrote; evaluations of earlier weights become history
            try:
                prev = json.loads(old.read_text())
                if not isinstance(prev, dict):
                    raise ValueError("not a JSON object")
                metrics = {**retire_evaluations(upgrade_card(prev), self.state.step), **metrics}
            except (ValueError, UnicodeDecodeError) as exc:
                tqdm.write(f"warning: {old} is unreadable ({exc.__class__.__name__}); writing a new one")
        validate_card(metrics)
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

    def _next_indices(self) -> np.ndarray:
        """This rank's share of the next global batch (see :class:`DataOrder`)."""
        return self.order.next(self.state)

    # --- one step ------------------------------------------------------------------------------
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
        use_bf16 = self.cfg.bf16 if self.device.type == "cuda" else self.cfg.cpu_bf16
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
        grad_norm = self.clipper.clip(list(self.model.parameters()))
        if self.cfg.warmup_steps > 0:
            lr = self.lr_at(self.state.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.optimizer.step()
        self._ema_update()
        self.state.step += 1
        if self.order.position is not None:  # a planned dataset: its position, and the molecules of this batch
            self.state.epoch, self.state.batch_index, seen = self.order.position
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
                        append_csv(log_path, row)
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
        if "out_dir" in inspect.signature(self.evaluate).parameters:  # it keeps its samples in the run folder
            result = self.evaluate(self.ema.module, out_dir=self.out, step=self.state.step)
        else:
            result = self.evaluate(self.ema.module)
        row = {"step": self.state.step, "epochs": round(self.epochs(), 3),
               "wall_seconds": round(self.state.wall_seconds, 1), **result}
        self.curve.append(row)
        tqdm.write("eval " + json.dumps(row))
