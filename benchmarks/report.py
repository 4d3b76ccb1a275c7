"""The benchmark report: Markdown tables from suite runs, and the range check run by ``--quick``.

Tables (the row's ``tables`` say where it appears; quoted rows come from :mod:`benchmarks.published`):

- ``quality``: EDM's Table 2 layout: NLL, atom and molecule stability (3D samples only; "—" for
  graph models), validity, valid & unique, in %;
- ``qm9_2d``: the graph generators' layout: validity, validity without the model's checks,
  uniqueness, novelty, in %;
- ``moses``: MOSES' metrics against the dataset's test set, fractions;
- ``guacamol``: GuacaMol's distribution-learning scores, fractions.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .published import PublishedRow, published_rows
from .suite import Row, Run

__all__ = ["TABLES", "render", "render_run", "check_run", "write_report"]


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[tuple[str, str], ...]   # (metric key, header)
    percent: bool                          # measured fractions shown as %
    digits: int
    published: str | None = None           # published table quoted beside the measured rows
    published_datasets: tuple[str, ...] = ("qm9",)
    note: str = ""
    column_datasets: tuple[tuple[str, str], ...] = ()  # (metric key, the only dataset whose runs show it)

    def columns_for(self, dataset: str) -> tuple[tuple[str, str], ...]:
        """The columns a run on ``dataset`` shows (TestSF exists for MOSES alone)."""
        only = dict(self.column_datasets)
        return tuple((c, h) for c, h in self.columns if only.get(c, dataset) == dataset)


TABLES: dict[str, Table] = {
    "quality": Table(
        "Sample quality and likelihood (layout of EDM's Table 2)",
        (("nll", "NLL (nats)"), ("atom_stability", "atom stab. %"), ("molecule_stability", "mol. stab. %"),
         ("validity", "valid %"), ("valid_and_unique", "valid & unique %")),
        percent=True, digits=1, published="qm9_edm",
        note="Stability is EDM's rule (bonds from interatomic distances, allowed valences) and exists only for 3D "
             "samples; graph models show —. NLL is the mean over test molecules of -log p in nats per molecule: "
             "exact for `ar` for its canonical atom order (so an upper bound on -log p of the graph), -ELBO (an "
             "upper bound) for `vae`, EDM's variational bound for `edm`. The graph "
             "models' NLL is over heavy-atom graphs, EDM's over 3D coordinates and atom types with hydrogens (a "
             "density, so it can be negative): the two are not comparable."),
    "qm9_2d": Table(
        "Graph generators: validity, uniqueness, novelty",
        (("validity", "valid %"), ("validity_unconstrained", "valid w/o check %"), ("uniqueness", "unique %"),
         ("novelty", "novel %")),
        percent=True, digits=2, published="qm9_2d",
        note="Unique: distinct canonical SMILES among the valid samples. Novel: unique valid molecules not in the "
             "training split. Valid w/o check: a second sample of the same size with the model's valence checks "
             "off (`mask=False` for `ar`, `constrained=False` for `vae`)."),
    "moses": Table(
        "MOSES metrics",
        (("validity", "valid"), ("unique@1000", "unique@1k"), ("unique@10000", "unique@10k"), ("fcd", "FCD/{ref}"),
         ("fcd_testsf", "FCD/TestSF"), ("snn", "SNN/{ref}"), ("snn_testsf", "SNN/TestSF"), ("frag", "Frag/{ref}"),
         ("frag_testsf", "Frag/TestSF"), ("scaf", "Scaf/{ref}"), ("scaf_testsf", "Scaf/TestSF"),
         ("intdiv1", "IntDiv1"), ("intdiv2", "IntDiv2"), ("filters", "Filters"), ("novelty", "novelty")),
        percent=False, digits=3, published="moses", published_datasets=("moses",),
        note="As MOSES computes them, on the valid molecules: unique@k over the first k valid ones (empty when "
             "fewer were drawn), FCD (lower is better), SNN, Frag and Scaf against the comparison set, IntDiv with "
             "Morgan fingerprints (radius 2, 1024 bits), Filters (MCF, PAINS, allowed atoms, no charges, no large "
             "rings). These set metrics depend on the sample size: compare rows with the same number of "
             "molecules (MOSES used 30,000). TestSF is MOSES' scaffold test set (scaffolds absent from "
             "training); its columns stay empty in runs made before they were measured.",
        column_datasets=tuple((f"{m}_testsf", "moses") for m in ("fcd", "snn", "frag", "scaf"))),
    "guacamol": Table(
        "GuacaMol distribution-learning scores",
        (("validity", "validity"), ("uniqueness", "uniqueness"), ("novelty", "novelty"), ("kl_score", "KL score"),
         ("fcd_score", "FCD score")),
        percent=False, digits=3, published="guacamol", published_datasets=("moses",),
        note="KL score: mean over GuacaMol's nine descriptors and the internal nearest-neighbour similarity of "
             "exp(-KL); FCD score: exp(-0.2 FCD); both against GuacaMol's seeded draw of 10,000 training molecules. "
             "GuacaMol's own baselines were trained and scored on ChEMBL 24, not on this dataset: same "
             "definitions, different data."),
}

_DASH = "—"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _measured_cell(row: Row, key: str, table: Table) -> str:
    if key == "nll":
        if not row.nll:
            return ""
        value = _number(row.nll.get("mean"))
        return "" if value is None else f"{value:.{table.digits}f} ({row.nll.get('kind', '')})"
    if key in ("atom_stability", "molecule_stability") and row.input != "3d":
        return _DASH
    value = _number(row.metrics.get(key))
    if value is None:
        return ""
    return f"{100 * value:.{table.digits}f}" if table.percent else f"{value:.{table.digits}f}"


def _samples_cell(row: Row) -> str:
    src = row.samples or {}
    count = f"{row.n_molecules:,}"
    if src.get("source") == "file":
        return f"{count}, file `{Path(src['file']).name}`"
    if row.role == "data":
        return count
    steps = (src.get("settings") or {}).get("steps")
    return f"{count}, sampled here" + (f", {steps} steps" if steps else "")


def _source_cell(row: Row) -> str:
    if row.role == "data":
        return "data, measured here"
    if (row.samples or {}).get("source") == "file":
        return "measured here (samples drawn elsewhere)"
    return "measured here"


class _Sources:
    """Numbered footnotes for the quoted rows' sources."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, row: PublishedRow) -> str:
        if row.source not in self.items:
            self.items.append(row.source)
        mark = " †" if not row.checked else ""
        return f"quoted [{self.items.index(row.source) + 1}]{mark}"

    def lines(self) -> list[str]:
        return [f"[{k}] {s}" + ("  " if k < len(self.items) else "") for k, s in enumerate(self.items, start=1)]


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return lines


def render_table(run: Run, key: str) -> list[str]:
    """One table of a run as Markdown lines (empty if no row belongs to it)."""
    table = TABLES[key]
    rows = sorted((r for r in run.rows if key in r.tables), key=lambda r: r.role != "data")
    if not rows:
        return []
    ref = next((r.reference for r in run.rows if r.reference), "reference")
    columns = table.columns_for(run.dataset)
    header = ["model", "samples", *(h.format(ref=ref) for _, h in columns), "source"]
    body = [[r.name, _samples_cell(r), *(_measured_cell(r, c, table) for c, _ in columns), _source_cell(r)]
            for r in rows]
    sources = _Sources()
    quoted = published_rows(table.published) if table.published and run.dataset in table.published_datasets else []
    for p in quoted:
        body.append([p.model, "", *(p.values.get(c, "") for c, _ in columns), sources.ref(p)])
    lines = [f"### {table.title}", "", *_md_table(header, body), ""]
    if quoted:
        lines += ["Quoted rows, as printed in their sources" + (" (another dataset: ChEMBL 24)"
                                                                if key == "guacamol" else "") + ":", ""]
        lines += sources.lines()
        if any(not p.checked for p in quoted):
            lines += ["", "† read second-hand; not yet checked against the paper itself."]
        lines.append("")
    lines += [table.note, ""]
    return lines


def _mib(memory: dict | None) -> str:
    if not memory or memory.get("peak_rss_mib") is None:
        return ""
    text = f"{memory['peak_rss_mib']:,.0f} (+{memory['increase_mib']:,.0f})"
    if memory.get("cuda_peak_mib") is not None:
        text += f"; GPU {memory['cuda_peak_mib']:,.0f}"
    return text


def render_speed(run: Run) -> list[str]:
    body = []
    for row in run.rows:
        for entry in row.speed:
            sample, train = entry.get("sample") or {}, entry.get("train_step") or {}
            body.append([row.name, entry["device"],
                         f"{sample['molecules_per_second']:,.1f}" if sample else "",
                         f"{sample['n']:,} in {sample['seconds']:.1f} s" if sample else "",
                         _mib(sample.get("memory")),
                         f"{train['seconds_per_step']:.3f}" if train else entry.get("train_step_note", ""),
                         _mib(train.get("memory"))])
    if not body:
        return []
    header = ["model", "device", "sampling, molecules/s", "timed call", "sampling peak RSS, MiB (+ increase)",
              "training step, s (batch 64)", "training peak RSS, MiB (+ increase)"]
    load = run.machine.get("load_average")
    return ["### Speed and memory", "", *_md_table(header, body), "",
            "Sampling: one `model.sample(n)` call timed with a wall clock, n / seconds (for molgen models this "
            "includes building and sanitising the RDKit molecules). Training step: a batch of 64 training "
            "molecules through `model.loss`, `backward()` and an AdamW step, median of a few steps after a "
            "warm-up, on a copy of the model. Memory: the process's peak resident set size during the call "
            "(kernel high-water mark reset just before; it includes the data and models the suite holds), and in "
            "brackets its increase over the resident size just before the call (after garbage collection and "
            "glibc's `malloc_trim`), which is what the call itself needed; on a GPU also "
            "`torch.cuda.max_memory_allocated`. "
            + (f"The machine was shared with other jobs (load average {load[0]:.1f} at the start): CPU numbers "
               "vary with the load." if load else ""), ""]


def render_figures(run: Run) -> list[str]:
    lines = []
    grids = [(r.name, r.figures["grid"]) for r in run.rows if r.figures.get("grid")]
    if run.figures.get("properties"):
        lines += ["### Property distributions", "",
                  f"![QED, SA, logP, weight and heavy atoms of generated molecules against data]"
                  f"({run.figures['properties']})", "",
                  "Largest fragment of each valid molecule, at most 2,000 per set; grey: data.", ""]
    if grids:
        lines += ["### Samples", ""]
        for name, path in grids:
            lines += [f"**{name}**", "", f"![{name} samples]({path})", ""]
    return lines


def render_run(run: Run) -> str:
    """One run (one dataset) as a Markdown section."""
    machine = run.machine
    lines = [f"## {run.dataset.upper() if run.dataset in ('qm9', 'moses') else run.dataset}: `{run.name}`", ""]
    info = [f"Command: `{run.command}`" if run.command else "",
            f"Date: {run.date}" + (f"; wall time {run.seconds / 60:.1f} min" if run.seconds else ""),
            (f"Machine: {machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores, "
             f"{machine.get('torch_threads', '?')} torch threads, torch {machine.get('torch', '?')}, "
             f"RDKit {machine.get('rdkit', '?')}" + (f", GPUs: {', '.join(machine['gpus'])}"
                                                     if machine.get("gpus") else "")) if machine else ""]
    lines += [x + "  " for x in info if x] + [""]
    for key in TABLES:
        lines += render_table(run, key)
    lines += render_speed(run)
    lines += render_figures(run)
    notes = [f"- {n}" for n in run.notes]
    for row in run.rows:
        src = row.samples or {}
        if src.get("sampled_by"):
            notes.append(f"- {row.name}: {src['sampled_by']}" + (f" (`{src['file']}`)" if src.get("file") else ""))
        if row.nll:
            notes.append(f"- {row.name}: NLL on {row.nll['test_set']}, {row.nll['scored']} scored "
                         f"({row.nll['kind']}; {row.nll['seconds']} s)")
        notes += [f"- {row.name}: {n}" for n in row.notes]
    if notes:
        lines += ["### Notes", "", *notes, ""]
    return "\n".join(lines)


_ORDER = {"qm9": 0, "moses": 1}


def render(runs: Sequence[Run], title: str = "Benchmark results") -> str:
    """The whole report: a header and one section per run (QM9 first, then MOSES, then others)."""
    head = [f"# {title}", "",
            "Generated by `python -m benchmarks.run` (see `benchmarks/__init__.py`); do not edit by hand. Every "
            "measured number comes from the command shown in its section; quoted numbers carry their source.", ""]
    ordered = sorted(runs, key=lambda r: (_ORDER.get(r.dataset, 2), r.name))
    return "\n".join(head) + "\n" + "\n".join([*(render_run(r) for r in ordered), *render_conditional()])


def render_conditional(pretrained: Path | None = None) -> list[str]:
    """The conditional-generation section: for every shipped checkpoint whose card has an
    ``other_evaluations/conditional`` (``benchmarks.studies.conditional_generation``), the MAE of RDKit's
    value against each requested target per sampler, and its requested-against-achieved figure; first the
    curated summary across checkpoints, ``benchmarks/results/conditional_summary.md``, where there is one
    (its numbers come from the ``conditional_*.txt`` files beside it, each with its command)."""
    from molgen.models.base import PRETRAINED_DIR
    from molgen.models.card import read_card

    folders = sorted(p for p in Path(pretrained or PRETRAINED_DIR).iterdir() if (p / "metrics.json").is_file())
    lines: list[str] = []
    for folder in folders:
        ev = read_card(folder).get("other_evaluations", {}).get("conditional")
        if not ev or not ev.get("results"):
            continue
        samplers = list(next(iter(ev["results"].values())))
        guided = [s for s in samplers if s.startswith("guidance")]
        body = []
        for label, rows in ev["results"].items():
            keys = [part.split("=")[0] for part in label.split(", ")]
            cells = [", ".join(f"{rows[s][f'mae_{k}']:.3g}" for k in keys if f"mae_{k}" in rows[s]) for s in samplers]
            top = rows[guided[-1]] if guided else rows[samplers[0]]
            body.append([label, *cells, f"{100 * top['validity']:.1f} / {100 * top['uniqueness']:.1f}"])
        lines += [f"### `{folder.name}`", "", f"Command: `{ev.get('command', '?')}`; {ev.get('n_samples', '?')} samples "
                  f"per target; date {str(ev.get('date', '?'))[:16]}", "",
                  *_md_table(["target", *(f"MAE, {s}" for s in samplers),
                              f"valid / unique %, {guided[-1] if guided else samplers[0]}"], body), ""]
        if ev.get("figure"):
            lines += [f"![requested against achieved, {folder.name}]({Path(ev['figure']).relative_to('benchmarks')})", ""]
    if not lines:
        return []
    intro = ("Targets at the test split's 10th / 50th / 90th percentiles (and a pair at their medians); the MAE is "
             "between the target and RDKit's value of the valid samples. 'unconditional' is the same checkpoint "
             "without a condition and 'test molecules' the test split itself: what a model that ignores the "
             "condition but matches the data gets.")
    summary = Path(__file__).resolve().parent / "results" / "conditional_summary.md"
    curated = [summary.read_text().rstrip("\n"), ""] if summary.is_file() else []
    return ["## Conditional generation", "", intro, "", *curated, *lines]


def write_report(runs: Sequence[Run], path: str | Path) -> Path:
    """Render ``runs`` into a Markdown file (the runs' figure paths are relative to its folder)."""
    from molgen.chem.files import write_text

    return write_text(path, render(runs))


# --- range check -------------------------------------------------------------------------------------
_UNIT_EXTRA = ("snn", "frag", "scaf", "intdiv1", "intdiv2", "kl_score", "fcd_score", "qed_mean",
               "validity_unconstrained")
#: Metrics that may legitimately be undefined (no valid molecule, no scaffold, filter lists missing, ...).
_MAY_BE_UNDEFINED = frozenset({"uniqueness", "novelty", "frag", "scaf", "kl_score", "fcd_score", "filters",
                               "snn", "intdiv1", "intdiv2", "qed_mean", "sa_mean", "logp_mean", "weight_mean",
                               "qed_w1", "sa_w1", "logp_w1", "weight_w1", "molecule_stability_charged"})
_REQUIRED = ("validity", "valid_and_unique")


def metric_range(key: str) -> tuple[float, float]:
    """The closed interval a metric must lie in."""
    from molgen.metrics.result import METRICS

    if (key in METRICS and METRICS[key][1]) or key in _UNIT_EXTRA:
        return 0.0, 1.0
    if key == "sa_mean":
        return 1.0, 10.0
    if key == "logp_mean":
        return -math.inf, math.inf
    return 0.0, math.inf  # FCD, Wasserstein distances, weight


def _fmt_range(lo: float, hi: float) -> str:
    return f"[{lo:g}, {hi:g}]"


def check_run(run: Run) -> list[str]:
    """Every problem with a run's numbers, one line each (empty list: all in range and finite)."""
    problems = []
    for row in run.rows:
        for key in _REQUIRED:
            if _number(row.metrics.get(key)) is None:
                problems.append(f"{row.name}: {key} is missing or not finite ({row.metrics.get(key)!r})")
        for key, value in row.metrics.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                if key not in _MAY_BE_UNDEFINED and key not in _REQUIRED:
                    problems.append(f"{row.name}: {key} is undefined (NaN)")
                continue
            lo, hi = metric_range(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
                problems.append(f"{row.name}: {key} = {value!r} is outside {_fmt_range(lo, hi)} or not finite")
        if row.nll is not None and (_number(row.nll.get("mean")) is None or not row.nll.get("scored")):
            problems.append(f"{row.name}: NLL is not finite ({row.nll.get('mean')!r}, {row.nll.get('scored')} scored)")
        for entry in row.speed:
            rate = _number((entry.get("sample") or {}).get("molecules_per_second"))
            if rate is None or rate <= 0:
                problems.append(f"{row.name}: sampling speed on {entry.get('device')} is not a positive number")
            step = entry.get("train_step")
            if step is not None and (_number(step.get("seconds_per_step")) or 0) <= 0:
                problems.append(f"{row.name}: training step time on {entry.get('device')} is not positive")
    return problems
