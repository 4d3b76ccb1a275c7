"""EDM throughput: training molecules per second through the real training loop, by model size and
batching (every batch padded to 29 atoms, trimmed to its largest molecule, or size-bucketed), seconds
per sampling step, and the headline CLI end to end with its user and system time.

    python -m benchmarks.studies.bench_edm_throughput --device cpu --out benchmarks/results/bench_edm_throughput_cpu.txt
    python -m benchmarks.studies.bench_edm_throughput --device cuda --batch 1024 --steps 200 --compile --out ...

On a GPU it uses bf16 autocast and (with --compile) torch.compile, as training does. The CLI rows
run ``python -m molgen.sample --model edm`` in a fresh process (nothing warmed up), once with the
package's allocator settings and once with them switched off (MOLGEN_NO_MALLOPT=1). On a CPU,
``--cpu-bf16`` adds rows with bfloat16 autocast: training (``molgen train --cpu-bf16``), the sampling
step and the CLI (``--precision bf16``, allocator settings on).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import Stopwatch, command_line, machine, median_seconds, timed

MODES = ("fixed", "trimmed", "bucketed")
BUCKETS = (12, 16, 20, 24, 29)


def _dataset(mode: str, device: str):
    from molgen.datasets.qm9_3d import QM9Bucketed, QM9Padded

    data = QM9Bucketed("train", buckets=BUCKETS) if mode == "bucketed" else QM9Padded("train", fixed_size=mode == "fixed")
    return data.to(device)


def train_throughput(size: tuple[int, int], mode: str, device: str, batch: int, steps: int, warmup: int,
                     compile_: bool, cpu_bf16: bool = False) -> dict[str, float]:
    """Molecules per second over ``steps`` training steps after ``warmup`` steps (compilation)."""
    from molgen.models.edm import EDM
    from molgen.training import TrainConfig, Trainer

    data = _dataset(mode, device)
    torch.manual_seed(0)
    model = EDM(hidden=size[0], n_layers=size[1], atom_count_hist=data.atom_count_hist.tolist())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(batch_size=batch, lr=1e-4, max_steps=warmup, checkpoint_every=10 ** 9,
                          log_every=10 ** 9, progress=False, compile=compile_, bf16=True,
                          cpu_bf16=cpu_bf16)
        trainer = Trainer(model, data, cfg, Path(tmp) / "run", device=device)
        trainer.fit()
        seen0 = trainer.state.samples
        trainer.cfg.max_steps = warmup + steps
        _, seconds = timed(trainer.fit, device=device)
        molecules = trainer.state.samples - seen0
    return {"molecules_per_s": molecules / seconds, "steps_per_s": steps / seconds, "seconds": seconds,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6}


def sampling_step(size: tuple[int, int], device: str, batch: int, repeats: int, precision: str = "fp32") -> float:
    """Median seconds of one denoising step on ``batch`` random QM9 training molecules, the network in
    ``precision`` as the sampler runs it (``EDM.sample(precision=...)``)."""
    from molgen.models.edm import EDM
    from molgen.nn.precision import autocast_dtype

    data = _dataset("trimmed", device)
    torch.manual_seed(0)
    model = EDM(hidden=size[0], n_layers=size[1], atom_count_hist=data.atom_count_hist.tolist()).to(device).eval()
    b = data.batch(np.random.default_rng(0).choice(len(data), batch, replace=False))
    mask = b["mask"].unsqueeze(-1).float()
    z = model.noise_like(torch.zeros(*b["types"].shape, 3 + model.h_dim, device=device), mask)
    t = torch.full((batch,), 0.5, device=device)
    dtype = autocast_dtype(precision, device)
    with torch.no_grad():
        return median_seconds(lambda: model.predict(z, t, mask, autocast=dtype), repeats, device=device)


def cli_run(n: int, steps: int | None, tuned: bool, precision: str = "fp32") -> dict[str, float]:
    """Wall, user and system seconds of ``python -m molgen.sample --model edm -n N`` in a new process
    (``--precision bf16`` added for that precision)."""
    cmd = [sys.executable, "-m", "molgen.sample", "--model", "edm", "-n", str(n), "--no-progress"]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    if precision != "fp32":
        cmd += ["--precision", precision]
    env = dict(os.environ)
    env.pop("MOLGEN_NO_MALLOPT", None)
    if not tuned:
        env["MOLGEN_NO_MALLOPT"] = "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Stopwatch() as clock:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = clock.seconds
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "summary": summary, "command": " ".join(cmd[1:])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.bench_edm_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--sizes", default="128x6,256x9", help="hidden x layers, comma-separated")
    p.add_argument("--modes", default=",".join(MODES), help=f"batching modes among {', '.join(MODES)}")
    p.add_argument("--batch", type=int, default=64, help="molecules per batch (largest bucket)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (CUDA)")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="CPU: also time each training row with bfloat16 autocast (molgen train --cpu-bf16), the "
                        "sampling step in bf16 and the CLI rows with --precision bf16")
    p.add_argument("--sampling-repeats", type=int, default=3)
    p.add_argument("--cli", default="100,200", help="molecule counts for the CLI rows ('' to skip; CPU)")
    p.add_argument("--cli-steps", default="default,100", help="step counts for the CLI rows")
    p.add_argument("--out", default=None, help="also write the report to this file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but no CUDA device is available")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    bad = set(modes) - set(MODES)
    if bad:
        raise SystemExit(f"error: unknown modes {sorted(bad)}; choose from {', '.join(MODES)}")
    lines = [f"command: {command_line(argv)}", f"machine: {machine(args.device)}",
             f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    print("\n".join(lines), flush=True)

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    emit(f"training through molgen.training.Trainer, batch {args.batch} (bucketed: {args.batch} molecules in the "
         f"29-atom bucket, more in smaller ones, same padded atoms), {args.steps} timed steps after {args.warmup}:")
    precisions = (False, True) if args.cpu_bf16 and args.device == "cpu" else (False,)
    for size in sizes:
        for mode in modes:
            for bf in precisions:
                r = train_throughput(size, mode, args.device, args.batch, args.steps, args.warmup, args.compile, bf)
                label = " cpu-bf16" if bf else ""
                emit(f"  {size[0]}x{size[1]} ({r['params_M']:.2f}M params) {mode:<9}{label} {r['molecules_per_s']:9.1f} "
                     f"molecules/s {r['steps_per_s']:7.2f} steps/s")
    emit(f"sampling, one denoising step on {args.batch} random training molecules (padded to the largest):")
    for size in sizes:
        for bf in precisions:
            seconds = sampling_step(size, args.device, args.batch, args.sampling_repeats, "bf16" if bf else "fp32")
            emit(f"  {size[0]}x{size[1]}{' bf16' if bf else ''}: {seconds:.3f} s")
    counts = [int(c) for c in args.cli.split(",") if c] if args.device == "cpu" else []
    if counts:
        emit("headline CLI in a fresh process (wall / user / system seconds):")
        for n in counts:
            for st in args.cli_steps.split(","):
                steps = None if st == "default" else int(st)
                for tuned, bf in [(True, False), (False, False)] + [(True, True)] * (True in precisions):
                    r = cli_run(n, steps, tuned, "bf16" if bf else "fp32")
                    emit(f"  {r['command']}{'' if tuned else '  [MOLGEN_NO_MALLOPT=1]'}: {r['wall']:.1f} / "
                         f"{r['user']:.1f} / {r['sys']:.1f}   ({r['summary']})")
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    emit(f"this run: user {own.ru_utime:.1f} s, system {own.ru_stime:.1f} s (CLI processes: user {kids.ru_utime:.1f} s, "
         f"system {kids.ru_stime:.1f} s); load average at end {os.getloadavg()[0]:.1f} (the machine is shared)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
