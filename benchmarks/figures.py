"""Pictures for the benchmark report: a grid of sampled molecules per model (RDKit drawing) and
histograms of QED, SA score, logP, molecular weight and heavy-atom count, generated against data, and
requested-against-achieved property plots of conditional samples (matplotlib, Agg backend). PNGs are kept small (a few tens of KB; :data:`MAX_BYTES` is checked)."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem

from molgen.samples import SampleSet

__all__ = ["molecule_grid", "property_histograms", "requested_achieved", "MAX_BYTES"]

MAX_BYTES = 300_000
#: Molecules per set used for the histograms (a seeded subset of larger sets).
HISTOGRAM_MOLECULES = 2_000


def _write_png(data: bytes, path: Path) -> Path:
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path.name} would be {len(data) / 1e3:.0f} KB, over the {MAX_BYTES / 1e3:.0f} KB limit")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _save(fig, path: str | Path, title: str = "") -> Path:
    """Write a matplotlib figure as a PNG (size-checked) and close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return _write_png(buffer.getvalue(), Path(path))


def _drawable(mol: Chem.Mol) -> Chem.Mol:
    """Hydrogens removed and 2D coordinates, so 3D samples draw like graphs."""
    from rdkit.Chem import AllChem

    m = Chem.RemoveHs(mol, sanitize=False)
    m = Chem.Mol(m)
    m.RemoveAllConformers()
    AllChem.Compute2DCoords(m)
    return m


def molecule_grid(samples: SampleSet, path: str | Path, count: int = 16, per_row: int = 4,
                  size: int = 160) -> Path | None:
    """The first ``count`` valid samples as a PNG grid with their SMILES (largest fragment) as legends;
    None if there is no valid sample."""
    from rdkit.Chem import Draw

    picked = [(m, s) for m, s in zip(samples.mols, samples.smiles) if m is not None][:count]
    if not picked:
        return None
    mols = [_drawable(m) for m, _ in picked]
    legends = [s if len(s) <= 28 else s[:25] + "..." for _, s in picked]
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(size, size), legends=legends,
                                 returnPNG=False)
    buffer = io.BytesIO()
    image.convert("P", palette=1, colors=64).save(buffer, format="PNG", optimize=True)  # 1: adaptive palette
    return _write_png(buffer.getvalue(), Path(path))


def _properties(samples: SampleSet, limit: int, seed: int) -> dict[str, np.ndarray]:
    from molgen.metrics.properties import property_table

    mols = [m for m in (Chem.MolFromSmiles(s) for s in samples.smiles if s) if m is not None]
    if len(mols) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(mols), limit, replace=False))
        mols = [mols[i] for i in keep]
    table = property_table(mols)
    table["heavy atoms"] = np.array([m.GetNumHeavyAtoms() for m in mols], dtype=np.float64)
    return table


_PANELS = (("QED", "QED"), ("SA", "SA score"), ("logP", "logP"), ("weight", "mol. weight (g/mol)"),
           ("heavy atoms", "heavy atoms"))


def property_histograms(generated: Mapping[str, SampleSet], data: Mapping[str, SampleSet], path: str | Path,
                        title: str = "", limit: int = HISTOGRAM_MOLECULES, seed: int = 0) -> Path | None:
    """Density histograms of the five properties: ``data`` sets filled grey, ``generated`` as lines.

    Uses the largest fragment of each valid sample, at most ``limit`` molecules per set (seeded
    subset). None if no set has a valid molecule.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = {name: _properties(s, limit, seed) for name, s in {**data, **generated}.items()}
    tables = {name: t for name, t in tables.items() if t["QED"].size}
    if not tables:
        return None
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(15, 2.9), dpi=72)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label) in zip(axes, _PANELS):
        values = np.concatenate([t[key] for t in tables.values()])
        lo, hi = np.percentile(values, [0.5, 99.5])
        if key == "heavy atoms":
            bins: Sequence[float] | int = np.arange(np.floor(values.min()) - 0.5, values.max() + 1.5)
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        for k, (name, t) in enumerate(tables.items()):
            if name in data:
                ax.hist(t[key], bins=bins, density=True, color="0.75", label=f"{name} (n={t[key].size})")
            else:
                ax.hist(t[key], bins=bins, density=True, histtype="step", linewidth=1.5,
                        color=colors[k % len(colors)], label=f"{name} (n={t[key].size})")
        ax.set_xlabel(label)
        ax.set_yticks([])
    axes[0].legend(fontsize=7, loc="upper left", frameon=False)
    return _save(fig, path, title)


def requested_achieved(achieved: Mapping[str, Mapping[str, Mapping[float, np.ndarray]]], path: str | Path,
                       title: str = "") -> Path | None:
    """One panel per property: box plots of the achieved values (RDKit's, of the valid samples) at each
    requested value, one box per sampler (``achieved[property][sampler][target] -> values``), and the
    line achieved = requested. None if there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    props = [k for k, by in achieved.items() if any(len(v) for t in by.values() for v in t.values())]
    if not props:
        return None
    fig, axes = plt.subplots(1, len(props), figsize=(4.2 * len(props), 3.4), dpi=72, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, prop in zip(axes[0], props):
        samplers = list(achieved[prop])
        targets = sorted({t for by in achieved[prop].values() for t in by})
        width = 0.8 / max(len(samplers), 1)
        for k, sampler in enumerate(samplers):
            data = [np.asarray(achieved[prop][sampler].get(t, []), dtype=float) for t in targets]
            data = [d[np.isfinite(d)] for d in data]
            pos = [i - 0.4 + width * (k + 0.5) for i in range(len(targets))]
            box = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False)
            for patch in box["boxes"]:
                patch.set_facecolor(colors[k % len(colors)])
                patch.set_alpha(0.6)
            ax.plot([], [], color=colors[k % len(colors)], linewidth=6, alpha=0.6, label=sampler)
        ax.scatter(range(len(targets)), targets, marker="_", s=400, color="k", zorder=5, label="requested")
        ax.set_xticks(range(len(targets)))
        ax.set_xticklabels([f"{t:.3g}" for t in targets])
        ax.set_xlabel(f"requested {prop}")
        ax.set_ylabel(f"achieved {prop}")
    axes[0][0].legend(fontsize=7, loc="upper left", frameon=False)
    return _save(fig, path, title)
