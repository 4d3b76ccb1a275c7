"""Where an EDM sampling step spends its time on a CPU, in float32 and with the network under
bfloat16 autocast: torch.profiler over a few denoising passes of the shipped edm-qm9 on one batch
(atom counts drawn from its histogram, padded to the largest), the operators by self CPU time.

    OMP_NUM_THREADS=1 python -m benchmarks.studies.profile_edm_sampling --batch 64 --steps 3 --out benchmarks/results/edm_sampling_profile_cpu.txt
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.timing import command_line, machine, median_seconds, timed


def cast_once_check(model, z, t, mask, passes: int, rounds: int = 4) -> list[str]:
    """Whether casting the weights once per call would pay: bf16 passes with autocast entered per pass
    (as the sampler does; autocast casts the weights again each time) against the same passes inside
    one autocast region (its cache keeps the bf16 weights), interleaved, median seconds per pass."""
    import statistics

    import torch

    def per_pass():
        for _ in range(passes):
            model.predict(z, t, mask, autocast=torch.bfloat16)

    def one_region():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            per_pass()

    seconds: dict[str, list[float]] = {"per_pass": [], "one_region": []}
    with torch.no_grad():
        per_pass(), one_region()
        for _ in range(rounds):
            seconds["per_pass"].append(timed(per_pass)[1] / passes)
            seconds["one_region"].append(timed(one_region)[1] / passes)
    a, b = (statistics.median(seconds[k]) for k in ("per_pass", "one_region"))
    return [f"bf16 weight casts: autocast entered per pass {a:.3f} s per pass, one autocast region for all "
            f"passes (weights cast once) {b:.3f} s per pass (medians of {rounds} interleaved rounds of {passes})"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.profile_edm_sampling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="profiled denoising passes per precision")
    p.add_argument("--rows", type=int, default=14, help="operators listed per precision")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    import molgen
    from molgen.models.base import make_generator
    from molgen.models.edm.records import atom_counts
    from molgen.nn.precision import autocast_dtype

    model = molgen.load("edm").eval()
    gen = make_generator(0, model.device)
    counts = atom_counts(model.n_atoms_probs, args.batch, None, gen)
    nmax = int(counts.max())
    mask = (torch.arange(nmax)[None, :] < counts[:, None]).unsqueeze(-1).float()
    z = model.noise_like(torch.zeros(args.batch, nmax, 3 + model.h_dim), mask, gen)
    t = torch.full((args.batch,), 0.5)
    lines = [f"command: {command_line(argv)}", f"machine: {machine('cpu')}",
             f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"shipped edm-qm9 ({sum(x.numel() for x in model.parameters()) / 1e6:.2f}M params), batch {args.batch}, "
             f"padded to {nmax} atoms (mean {counts.float().mean():.1f}), {args.steps} profiled passes after one", ""]
    for precision in [s for s in args.precisions.split(",") if s]:
        dtype = autocast_dtype(precision, "cpu")

        def denoise(z, t):  # one pass as the sampler runs it (the shipped model has no self-conditioning)
            return model.predict(z, t, mask, autocast=dtype)[0]

        with torch.no_grad():
            per_step = median_seconds(lambda: denoise(z, t), repeats=args.steps)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.steps):
                    denoise(z, t)
        lines.append(f"{precision}: {per_step:.3f} s per denoising pass (median of {args.steps})")
        lines.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if "bf16" in args.precisions:
        lines += cast_once_check(model, z, t, mask, args.steps)
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
