"""Run the benchmark suite on the shipped models and write the results and the report.

    python -m benchmarks.run [--models ar,vae,edm] [--dataset qm9|moses] [-n N] [--quick]
                             [--samples edm=FILE] [--edm-n N] [--nll-n N] [--out DIR]

Samples ``-n`` molecules from each model's shipped checkpoint for the dataset (or reads them from
``--samples MODEL=FILE``), evaluates them with ``molgen.metrics`` against the dataset, measures the
NLL of test molecules, sampling and training speed with memory, scores the data itself, draws the
figures, and writes ``<out>/results/<name>.json``, ``<out>/results/<name>/*.png`` and the report
``<out>/RESULTS.md`` (built from every run JSON in ``<out>/results``, so the QM9 and MOSES runs share
one report). ``<out>`` is ``benchmarks/`` by default.

``--quick`` (CI): 200 molecules per model (32 for EDM), NLL on 32 test molecules, QM9, written to a
temporary folder unless ``--out`` is given; the run fails with one line if any metric is out of
range or not finite. Every run is checked the same way.

The committed report (``benchmarks/RESULTS.md``, ``benchmarks/results/suite-*.json``) is replaced
only by a *full* run: all shipped models, at least 10,000 molecules each, NLL on at least 500 test
molecules, with FCD and the data rows, not ``--quick``. Any smaller or partial run without
``--out`` writes to a fresh folder ``runs/benchmarks-<name>-<time>/`` instead; ``--out benchmarks``
or ``--overwrite`` put it in the committed place on purpose.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: What a run must cover at least to replace the committed report by default.
FULL_RUN = {"n": 10_000, "nll_n": 500}
_SHIPPED = ("ar", "vae", "edm")  # benchmarks.suite.SHIPPED_MODELS, without importing torch here


class ArgumentError(ValueError):
    """A bad command-line value: one line, exit status 2."""


def _fail(message: str) -> None:
    raise ArgumentError(message)


def _pairs(items: list[str] | None, option: str, value_type: type = str) -> dict:
    """``MODEL=VALUE`` options (repeated for several models) as a dict."""
    out = {}
    for item in items or []:
        model, sep, value = item.partition("=")
        if not sep or not model.strip() or not value.strip():
            _fail(f"{option} takes MODEL=VALUE, got {item!r}")
        try:
            out[model.strip()] = value_type(value.strip())
        except ValueError:
            _fail(f"{option} {item!r}: {value!r} is not a {value_type.__name__}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The checked arguments; a bad value prints one line ``error: ...`` and exits with status 2."""
    try:
        return _parse_args(argv)
    except ValueError as exc:  # ArgumentError and the range checks of molgen.cli.common
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="ar,vae,edm", help="comma-separated shipped models (default: ar,vae,edm)")
    p.add_argument("--dataset", default="qm9", choices=("qm9", "moses"))
    p.add_argument("-n", type=int, default=None, help="molecules per model (default 10,000; --quick: 200)")
    p.add_argument("--edm-n", type=int, default=None, help="molecules for edm (default: -n; --quick: 32)")
    p.add_argument("--quick", action="store_true", help="small CI run with the range check")
    p.add_argument("--samples", action="append", metavar="MODEL=FILE",
                   help="score molecules drawn earlier (.xyz/.sdf/.smi, .gz allowed) instead of sampling MODEL")
    p.add_argument("--sampled-by", action="append", metavar="MODEL=TEXT",
                   help="how the --samples file was drawn (command, device, seconds), recorded in the report")
    p.add_argument("--nll-n", type=int, default=None, help="test molecules for the NLL (default 500; --quick: 32)")
    p.add_argument("--speed-n", action="append", metavar="MODEL=N",
                   help="molecules for a separate timed sampling call (used with --samples and --speed-devices; "
                        "default: min(n, 1000), edm 64); options taking MODEL=... repeat for several models")
    p.add_argument("--no-fcd", action="store_true", help="skip FCD and GuacaMol's FCD score (ChemNet)")
    p.add_argument("--no-data", action="store_true", help="skip the rows measured on the data itself")
    p.add_argument("--device", default="cpu", help="where the models sample (default cpu)")
    p.add_argument("--speed-devices", default=None,
                   help="further devices to time sampling and training on (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="folder for RESULTS.md and results/ (default: benchmarks/ for a full "
                                               "run, else a fresh runs/benchmarks-<name>-<time>/; --quick: a "
                                               "temporary folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="write a partial run into benchmarks/ anyway, replacing the committed report's files")
    p.add_argument("--name", default=None, help="run name (default suite-<dataset>, quick-<dataset>)")
    p.add_argument("--report-only", action="store_true", help="only rebuild RESULTS.md from the JSON files in --out")
    args = p.parse_args(argv)
    from molgen.cli.common import MAX_SAMPLES, check_count, check_seed

    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in _SHIPPED]
    if unknown or not args.models:
        _fail(f"--models: unknown model(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(_SHIPPED)}")
    for flag, value in (("-n", args.n), ("--edm-n", args.edm_n)):
        if value is not None and value <= 0:
            _fail(f"{flag} must be positive, got {value}")
        check_count(value, flag, 1, MAX_SAMPLES)
    if args.nll_n is not None and args.nll_n < 0:
        _fail(f"--nll-n must be 0 or more, got {args.nll_n}")
    check_count(args.nll_n, "--nll-n", 0, MAX_SAMPLES)
    check_seed(args.seed)
    check_count(args.threads, "--threads", 1)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail("--device cuda asked for, but no CUDA device is available")
    args.n = args.n or (200 if args.quick else 10_000)
    args.edm_n = args.edm_n or (32 if args.quick else args.n)
    args.nll_n = args.nll_n if args.nll_n is not None else (32 if args.quick else 500)
    args.samples = _pairs(args.samples, "--samples")
    args.sampled_by = _pairs(args.sampled_by, "--sampled-by")
    args.speed_n = {"edm": 16 if args.quick else 64, **_pairs(args.speed_n, "--speed-n", int)}
    for model, value in args.speed_n.items():
        check_count(value, f"--speed-n {model}=", 1, MAX_SAMPLES)
    args.name = args.name or f"{'quick' if args.quick else 'suite'}-{args.dataset}"
    if "/" in args.name or "\\" in args.name or args.name in ("", ".", ".."):
        _fail(f"--name must be a plain file name, got {args.name!r}")
    args.partial = partial_reasons(args)
    args.out_chosen = bool(args.out) or args.overwrite  # the user asked for this folder
    if args.out:
        args.out = Path(args.out)
    elif args.overwrite or args.report_only:
        args.out = HERE
    elif args.quick:
        args.out = Path(tempfile.mkdtemp(prefix="molgen-benchmarks-quick-"))
    elif args.partial:
        args.out = fresh_folder(args.name)
    else:
        args.out = HERE
    if args.out.exists() and not args.out.is_dir():
        _fail(f"--out {args.out} is a file; give a folder")
    for model, path in args.samples.items():
        if Path(path).is_dir():
            _fail(f"--samples {model}={path} is a folder; give a molecule file")
        if not Path(path).is_file():
            _fail(f"--samples {model}={path}: file not found")
    return args


def fresh_folder(name: str) -> Path:
    """``runs/benchmarks-<name>-<time>`` under the working folder (not yet created)."""
    return Path("runs") / f"benchmarks-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def partial_reasons(args: argparse.Namespace) -> list[str]:
    """Why a run is smaller than the committed report (empty for a full run)."""
    reasons = []
    if args.quick:
        reasons.append("--quick")
    if sorted(args.models) != sorted(_SHIPPED):
        reasons.append(f"models {','.join(args.models)} only")
    if args.n < FULL_RUN["n"] or args.edm_n < FULL_RUN["n"]:
        reasons.append(f"{min(args.n, args.edm_n):,} molecules (the report has {FULL_RUN['n']:,})")
    if args.nll_n < FULL_RUN["nll_n"]:
        reasons.append(f"NLL on {args.nll_n} molecules (the report has {FULL_RUN['nll_n']})")
    if args.no_fcd:
        reasons.append("--no-fcd")
    if args.no_data:
        reasons.append("--no-data")
    return reasons


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def draw_figures(run, results: Path, base: Path) -> None:
    """Molecule grids per model and the property histograms, paths stored relative to ``base``."""
    from .figures import molecule_grid, property_histograms

    folder = results / run.name
    generated, data = {}, {}
    for row in run.rows:
        if row.molecules is None:
            continue
        if row.role == "model":
            generated[row.name] = row.molecules
            path = molecule_grid(row.molecules, folder / f"grid-{row.name}.png")
            if path is not None:
                row.figures["grid"] = path.relative_to(base).as_posix()
        elif "moses" in row.tables:
            data[row.name] = row.molecules
    path = property_histograms(generated, data, folder / "properties.png",
                               title=f"{run.dataset}: generated (lines) against data (grey)")
    if path is not None:
        run.figures["properties"] = path.relative_to(base).as_posix()


def load_runs(results: Path) -> list:
    """Every run JSON in a results folder (other JSON files are ignored); ValueError naming the
    file for one that is not valid JSON or not a run."""
    import json

    from .suite import Run

    runs = []
    for path in sorted(results.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); restore it (git checkout {path}) or remove it") from None
        if isinstance(data, dict) and "rows" in data and "dataset" in data:
            try:
                runs.append(Run.from_dict(data))
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path} is not a readable run JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    return runs


def main(argv: list[str] | None = None) -> int:
    """The command; returns its exit status (2: bad arguments or input, 1: the range check failed,
    130: Ctrl-C)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    import torch

    from .report import check_run, write_report
    from .suite import run_suite

    if args.threads:
        torch.set_num_threads(args.threads)
    results = args.out / "results"
    report = args.out / "RESULTS.md"
    if args.report_only:
        try:
            runs = load_runs(results)
            if not runs:
                raise ValueError(f"no run JSON in {results}: nothing to report")
            write_report(runs, report)
        except ValueError as exc:
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        print(f"wrote {report}")
        return 0
    if args.partial and args.out.resolve() != HERE.resolve():
        _log(f"partial run ({'; '.join(args.partial)}): writing to {args.out}, not over the committed report "
             "(--out benchmarks or --overwrite would replace it)")
    elif args.partial:
        _log(f"partial run ({'; '.join(args.partial)}) written into {args.out} as asked")
    try:
        existing = load_runs(results) if results.is_dir() else []  # a broken JSON fails now, not after the run
    except ValueError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    del existing
    speed_devices = (args.speed_devices.split(",") if args.speed_devices is not None
                     else ["cuda"] if torch.cuda.is_available() and args.device != "cuda" else [])
    if ("edm" in args.models and args.dataset == "qm9" and "edm" not in args.samples and args.device == "cpu"
            and args.edm_n > 1000):
        _log(f"edm: sampling {args.edm_n:,} molecules on the CPU takes hours (about 0.3 s or more per molecule); "
             "--samples edm=FILE scores molecules drawn on a GPU instead, --edm-n N draws fewer")
    start = time.perf_counter()
    try:
        run = run_suite(args.models, args.dataset, args.n, model_n={"edm": args.edm_n}, samples=args.samples,
                        sampled_by=args.sampled_by, nll_molecules=args.nll_n, speed_n=args.speed_n,
                        fcd=not args.no_fcd, seed=args.seed, device=args.device,
                        speed_devices=[d for d in speed_devices if d], data=not args.no_data, name=args.name,
                        log=_log)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    scored = [row.n_molecules for row in run.rows if row.role == "model"]
    if not args.out_chosen and args.out.resolve() == HERE.resolve() and (not scored or min(scored) < FULL_RUN["n"]):
        # e.g. a --samples file with fewer molecules than asked for: still not the committed report's size
        args.out = fresh_folder(args.name)
        results, report = args.out / "results", args.out / "RESULTS.md"
        _log(f"partial run ({min(scored, default=0):,} molecules scored for a model, the report has "
             f"{FULL_RUN['n']:,}): writing to {args.out}, not over the committed report")
    run.command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None
                                                                                   else argv))
    run.settings["quick"] = args.quick
    draw_figures(run, results, args.out)
    run.seconds = round(time.perf_counter() - start, 1)
    json_path = run.save(results / f"{run.name}.json")
    write_report(load_runs(results), report)
    _log(f"wrote {json_path} and {report} ({run.seconds / 60:.1f} min)")
    problems = check_run(run)
    if problems:
        more = f" (and {len(problems) - 1} more; see {json_path})" if len(problems) > 1 else ""
        print(f"benchmark check failed: {problems[0]}{more}", file=sys.stderr)
        return 1
    print(f"benchmark check passed: {len(run.rows)} rows, every metric in range; report {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
