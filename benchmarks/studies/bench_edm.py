"""EDM speed: seconds per training step (batch 64, QM9 with hydrogens) and per sampling step, at EDM's
paper width (256 hidden x 9 layers) and at the shipped size; sampling 100 molecules end to end.

    python -m benchmarks.studies.bench_edm [--device cpu|cuda] [--out benchmarks/results/bench_edm_cpu.txt]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.timing import command_line, machine, median_seconds, timed


def bench_config(name: str, cfg: dict, data, device: str, repeats: int) -> str:
    from molgen.models.edm import EDM

    torch.manual_seed(0)
    model = EDM(**{**cfg, "atom_count_hist": data.atom_count_hist.tolist()}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    use_bf16 = device == "cuda"

    def train_step() -> None:
        b = {k: v.to(device) for k, v in data.batch(rng.choice(len(data), 64, replace=False)).items()}
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
            loss, _ = model.loss(b)
        opt.zero_grad()
        loss.backward()
        opt.step()

    b = {k: v.to(device) for k, v in data.batch(rng.choice(len(data), 64, replace=False)).items()}
    mask = b["mask"].unsqueeze(-1).float()
    z = model.noise_like(torch.zeros(*b["types"].shape, 3 + model.h_dim, device=device), mask)

    @torch.no_grad()
    def sample_step() -> None:
        model.dynamics(z, torch.full((z.shape[0],), 0.5, device=device), mask)

    t_train = median_seconds(train_step, repeats, device=device)
    t_sample = median_seconds(sample_step, repeats, device=device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return (f"{name:<28} {params:6.2f}M params   train step (batch 64): {t_train:7.3f} s   "
            f"sampling step (64 molecules): {t_sample:7.3f} s")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--skip-paper-size", action="store_true")
    p.add_argument("--skip-e3nn", action="store_true", help="skip the e3nn backbone (slow on a CPU)")
    p.add_argument("--checkpoint", default=None, help="EDM checkpoint to time (default: the shipped one)")
    args = p.parse_args()
    from molgen.datasets.qm9_3d import QM9Padded
    from molgen.models import load, pretrained_path

    data = QM9Padded("train")
    lines = [f"command: {command_line()}", f"machine: {machine(args.device)}"]
    configs = []
    if not args.skip_paper_size:
        configs.append(("EDM paper size 256x9", {"hidden": 256, "n_layers": 9}))
    from pathlib import Path

    shipped = Path(args.checkpoint) if args.checkpoint else pretrained_path("edm")
    if (shipped / "config.json").exists():
        model = load("edm", checkpoint=shipped)
        c = model.config
        configs.append((f"shipped {c['hidden']}x{c['n_layers']}", {k: c[k] for k in ("hidden", "n_layers")}))
        if not args.skip_e3nn:
            configs.append(("e3nn backbone 64x0e+16x1o x4", {"backbone": "e3nn", "hidden": 64, "n_layers": 4}))
    else:
        configs.append(("small 128x6", {"hidden": 128, "n_layers": 6}))
    for name, cfg in configs:
        lines.append(bench_config(name, cfg, data, args.device, args.repeats))
        print(lines[-1], flush=True)
    if (shipped / "config.json").exists():
        model = load("edm", checkpoint=shipped, device=args.device)
        out, secs = timed(model.sample, 100, seed=0, device=args.device)
        lines.append(f"100 molecules with the default settings ({model.default_sampling_steps} steps): {secs:.1f} s "
                     f"(valid {100 * out.validity:.0f} %)")
        print(lines[-1])
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
