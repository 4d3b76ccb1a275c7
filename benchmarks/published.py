"""Published numbers that the benchmark report quotes next to the suite's own measurements.

Every row carries the source it was taken from. Values are kept as the strings printed in the
source (in that table's units: percentages for the QM9 tables, fractions for MOSES and GuacaMol),
so nothing is rounded or converted on the way; a metric the source does not give is simply absent
(an empty cell in the report). ``checked=False`` marks numbers that were read second-hand (flagged
"(check)" in the project's reference notes) and have not yet been compared with the paper itself;
the report shows them with a mark.

Tables (the keys are the suite's metric names):

- ``qm9_edm``: QM9 with hydrogens, EDM's Table 2 layout: NLL (nats), atom and molecule stability,
  validity, valid & unique, all in % of 10,000 samples.
- ``qm9_2d``: QM9 heavy-atom graph generators: validity (with the model's checks), validity without
  the checks, uniqueness and novelty, in %.
- ``moses``: MOSES' metrics table (30,000 samples, against the MOSES test set), fractions.
- ``guacamol``: GuacaMol's distribution-learning scores (ChEMBL 24, 10,000 samples), fractions.

Apart from the suite's tables, :data:`QM9_CONDITIONAL` holds EDM's conditional-generation protocol on
QM9 (quoted by ``benchmarks.studies.edm_conditional``): the MAE of a property predictor (an EGNN
trained on the first half of the training split) between the requested and the generated molecules'
properties, in each property's unit (:data:`QM9_CONDITIONAL_UNITS`), with its baselines ("naive":
shuffled labels; "#atoms": the atom count only) and the predictor's own test error (second half).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PublishedRow", "PUBLISHED", "TABLE_UNITS", "published_rows", "PublishedMAE", "QM9_CONDITIONAL",
           "QM9_CONDITIONAL_UNITS"]

#: Units of each table's published values.
TABLE_UNITS: dict[str, str] = {"qm9_edm": "percent", "qm9_2d": "percent", "moses": "fraction",
                               "guacamol": "fraction"}


@dataclass(frozen=True)
class PublishedRow:
    """One quoted row: ``values`` maps metric keys to the numbers as printed in ``source``."""

    table: str
    model: str
    values: Mapping[str, str]
    source: str
    checked: bool = True
    note: str = ""
    dataset: str = field(default="")

    def __post_init__(self) -> None:
        if self.table not in TABLE_UNITS:
            raise ValueError(f"unknown table {self.table!r}; choose from {', '.join(TABLE_UNITS)}")
        if not self.source.strip():
            raise ValueError(f"published row {self.model!r} has no source")
        for key, value in self.values.items():
            float(value)  # every quoted cell is a number as printed
        if not self.dataset:
            object.__setattr__(self, "dataset", "moses" if self.table == "moses" else
                               "chembl" if self.table == "guacamol" else "qm9")


_EDM = "Hoogeboom et al., Equivariant Diffusion for Molecule Generation in 3D, ICML 2022, Table 2"
_MOSES = ("Polykovskiy et al., Molecular Sets (MOSES), Front. Pharmacol. 2020; molecularsets/moses README "
          "metrics table")
_GUACAMOL = "Brown et al., GuacaMol: Benchmarking Models for de Novo Molecular Design, JCIM 2019, Table 1"


def _edm(model: str, nll: str | None, atom: str, mol: str, valid: str, vu: str, source: str = _EDM,
         checked: bool = True) -> PublishedRow:
    values = {"atom_stability": atom, "molecule_stability": mol, "validity": valid, "valid_and_unique": vu}
    if nll is not None:
        values["nll"] = nll
    return PublishedRow("qm9_edm", model, values, source, checked)


#: MOSES' Table 2 columns in its order (README of molecularsets/moses): Test, then TestSF, for each set metric
MOSES_COLUMNS = ("validity", "unique@1000", "unique@10000", "fcd", "fcd_testsf", "snn", "snn_testsf", "frag",
                 "frag_testsf", "scaf", "scaf_testsf", "intdiv1", "intdiv2", "filters", "novelty")


def _moses(model: str, row: str) -> PublishedRow:
    """One row of MOSES' table, its means as printed there (``±`` spreads left out), space-separated in the
    order of :data:`MOSES_COLUMNS`."""
    values = row.split()
    if len(values) != len(MOSES_COLUMNS):
        raise ValueError(f"{model}: {len(values)} values for {len(MOSES_COLUMNS)} MOSES columns")
    return PublishedRow("moses", model, dict(zip(MOSES_COLUMNS, values)), _MOSES)


def _guacamol(model: str, valid: str, unique: str, novel: str, kl: str, fcd: str) -> PublishedRow:
    values = {"validity": valid, "uniqueness": unique, "novelty": novel, "kl_score": kl, "fcd_score": fcd}
    return PublishedRow("guacamol", model, values, _GUACAMOL, checked=False)


PUBLISHED: tuple[PublishedRow, ...] = (
    # --- QM9 with hydrogens, EDM's table ------------------------------------------------------
    _edm("QM9 data", None, "99.0", "95.2", "97.7", "97.7"),
    _edm("E-NF", "-59.7", "85.0", "4.9", "40.2", "39.4"),
    _edm("G-SchNet", None, "95.7", "68.1", "85.5", "80.3"),
    _edm("GDM-aug", "-92.5", "97.6", "71.6", "90.4", "89.5"),
    _edm("EDM", "-110.7", "98.7", "82.0", "91.9", "90.7"),
    _edm("GeoLDM", None, "98.9", "89.4", "93.8", "92.7",
         source="Xu et al., Geometric Latent Diffusion Models for 3D Molecule Generation, ICML 2023", checked=False),
    # --- QM9 heavy-atom graphs ----------------------------------------------------------------
    PublishedRow("qm9_2d", "CGVAE", {"validity": "100", "uniqueness": "98.57", "novelty": "94.35"},
                 "Liu et al., Constrained Graph Variational Autoencoders for Molecule Design, NeurIPS 2018",
                 checked=False),
    PublishedRow("qm9_2d", "GraphAF",
                 {"validity": "100", "validity_unconstrained": "67.0", "uniqueness": "94.2", "novelty": "88.8"},
                 "Shi et al., GraphAF: a Flow-based Autoregressive Model for Molecular Graph Generation, ICLR 2020",
                 checked=False),
    PublishedRow("qm9_2d", "GraphDF",
                 {"validity": "100", "validity_unconstrained": "82.7", "uniqueness": "97.6", "novelty": "98.1"},
                 "Luo et al., GraphDF: A Discrete Flow Model for Molecular Graph Generation, ICML 2021",
                 checked=False),
    PublishedRow("qm9_2d", "MoFlow", {"validity": "100", "uniqueness": "99.26", "novelty": "98.05"},
                 "Zang & Wang, MoFlow: An Invertible Flow Model for Generating Molecular Graphs, KDD 2020 "
                 "(README of the authors' code)"),
    # --- MOSES ----------------------------------------------------------------------------------
    _moses("Train (data)", "1.0 1.0 1.0 0.008 0.4755 0.6419 0.5859 1.0 0.9986 0.9907 0.0 0.8567 0.8508 1.0 1.0"),
    _moses("CharRNN", "0.9748 1.0 0.9994 0.0732 0.5204 0.6015 0.5649 0.9998 0.9983 0.9242 0.1101 0.8562 0.8503 "
                      "0.9943 0.8419"),
    _moses("VAE", "0.9767 1.0 0.9984 0.099 0.567 0.6257 0.5783 0.9994 0.9984 0.9386 0.0588 0.8558 0.8498 0.997 "
                  "0.6949"),
    _moses("AAE", "0.9368 1.0 0.9973 0.5555 1.0572 0.6081 0.5677 0.991 0.9905 0.9022 0.0789 0.8557 0.8499 0.996 "
                  "0.7931"),
    _moses("JTN-VAE", "1.0 1.0 0.9996 0.3954 0.9382 0.5477 0.5194 0.9965 0.9947 0.8964 0.1009 0.8551 0.8493 0.976 "
                      "0.9143"),
    _moses("LatentGAN", "0.8966 1.0 0.9968 0.2968 0.8281 0.5371 0.5132 0.9986 0.9972 0.8867 0.1072 0.8565 0.8505 "
                        "0.9735 0.9498"),
    # --- GuacaMol distribution learning (ChEMBL) -----------------------------------------------
    _guacamol("Random sampler", "1.000", "0.997", "0.000", "0.998", "0.929"),
    _guacamol("SMILES LSTM", "0.959", "1.000", "0.912", "0.991", "0.913"),
    _guacamol("Graph MCTS", "1.000", "1.000", "0.994", "0.522", "0.015"),
    _guacamol("AAE", "0.822", "1.000", "0.998", "0.886", "0.529"),
    _guacamol("ORGAN", "0.379", "0.841", "0.687", "0.267", "0.000"),
    _guacamol("VAE", "0.870", "0.999", "0.974", "0.982", "0.863"),
)


def published_rows(table: str) -> list[PublishedRow]:
    """The quoted rows of one table, in the order above."""
    if table not in TABLE_UNITS:
        raise ValueError(f"unknown table {table!r}; choose from {', '.join(TABLE_UNITS)}")
    return [row for row in PUBLISHED if row.table == table]


# --- QM9 conditional generation, EDM's protocol (not a suite table) -----------------------------------
#: Units of :data:`QM9_CONDITIONAL`'s MAEs, per property.
QM9_CONDITIONAL_UNITS = {"alpha": "Bohr^3", "gap": "meV", "homo": "meV", "lumo": "meV", "mu": "D",
                         "Cv": "cal/(mol K)"}


@dataclass(frozen=True)
class PublishedMAE:
    """One quoted row of EDM's conditional protocol: MAE per property as printed in ``source``."""

    model: str
    values: Mapping[str, str]
    source: str
    checked: bool = False

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError(f"published row {self.model!r} has no source")
        for key, value in self.values.items():
            if key not in QM9_CONDITIONAL_UNITS:
                raise ValueError(f"unknown property {key!r} in published row {self.model!r}")
            float(value)


def _conditional(model: str, alpha: str, gap: str, homo: str, lumo: str, mu: str, cv: str,
                 source: str) -> PublishedMAE:
    return PublishedMAE(model, {"alpha": alpha, "gap": gap, "homo": homo, "lumo": lumo, "mu": mu, "Cv": cv}, source)


_EDM_COND = "Hoogeboom et al., Equivariant Diffusion for Molecule Generation in 3D, ICML 2022, conditional generation table"

#: EDM's conditional-generation table and the rows later papers add to it (one model per property in
#: each paper); all read second-hand so far ("(check)" in the reference notes).
QM9_CONDITIONAL: tuple[PublishedMAE, ...] = (
    _conditional("naive (shuffled labels)", "9.01", "1470", "645", "1457", "1.616", "6.857", _EDM_COND),
    _conditional("#atoms", "3.86", "866", "426", "813", "1.053", "1.971", _EDM_COND),
    _conditional("EDM", "2.76", "655", "356", "584", "1.111", "1.101", _EDM_COND),
    _conditional("GeoLDM", "2.37", "587", "340", "522", "1.108", "1.025",
                 "Xu et al., Geometric Latent Diffusion Models for 3D Molecule Generation, ICML 2023"),
    _conditional("EEGSDE", "2.50", "487", "302", "447", "0.777", "0.941",
                 "Bao et al., Equivariant Energy-Guided SDE for Inverse Molecular Design, ICLR 2023"),
    _conditional("JODO", "1.42", "335", "226", "256", "0.628", "0.581",
                 "Huang et al., Learning Joint 2D & 3D Diffusion Models for Complete Molecule Generation, 2023"),
    _conditional("QM9 (predictor's test error)", "0.10", "64", "39", "36", "0.043", "0.040", _EDM_COND),
)
