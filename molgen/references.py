"""Named references for :func:`molgen.evaluate`: ``"qm9"``, ``"moses"`` or a molecule file.

A :class:`Reference` gives the comparison set (SMILES the set metrics compare with), the training set
(canonical SMILES for novelty), GuacaMol's seeded draw of 10,000 training molecules, and the statistics
precomputed on them (properties, MOSES' fingerprints / fragments / scaffolds, GuacaMol's KL descriptors,
ChemNet means and covariances). They are computed once and kept in one bundle per reference,
``cache_dir("refstats") / "<name>-<key>"``, where the key is a digest of the full content it is computed
from (the dataset files or the reference file), the RDKit version and :data:`BUNDLE_VERSION`: an edited
dataset or file never reuses a stale statistic. Each part is a file of its own in the bundle, written
atomically when first needed (ChemNet's statistics only when FCD is asked for).

A reference may carry further comparison sets (:attr:`Reference.others`), each a Reference of its
own with its own bundle: MOSES' scaffold test set (``TestSF``) beside its test set (``Test``).
Building statistics shows a bar per stage on stderr inside :func:`showing_progress` (the first use
of MOSES' reference takes minutes); they are quiet otherwise.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rdkit

from ._atomic import replace_atomically
from ._cache import cache_dir, cached_npz, digest_files, digest_strings
from .chem.convert import canonicalize, mols_from_3d, to_mol, to_smiles
from .chem.io import MoleculeFileError, read_molecules

#: Named references; a path to a molecule file is accepted too.
REFERENCES = ("qm9", "moses")
#: What ``reference=`` accepts for "no reference".
NO_REFERENCE = ("none", "")
#: Bump to invalidate every bundle (a change in how a statistic is computed).
BUNDLE_VERSION = 2
#: GuacaMol's reference draw: this many training molecules, drawn with this seed.
GUACAMOL_N, GUACAMOL_SEED = 10_000, 42
#: A reference file with fewer valid molecules is recomputed each time instead of cached.
CACHE_FILE_REFERENCES_FROM = 2000

_PROGRESS: ContextVar[bool | None] = ContextVar("molgen_reference_progress", default=False)


@contextmanager
def showing_progress(progress: bool | None) -> Iterator[None]:
    """Within this block, statistics that are built (not read from a bundle) show a bar per stage on
    stderr: always (True), never (False), or when stderr is a terminal (None)."""
    token = _PROGRESS.set(progress)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


class _Bundle:
    """One folder of cached parts; its name is the content key, so a part never needs re-checking."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def strings(self, part: str, compute: Callable[[], list[str]]) -> list[str]:
        if self.folder is None:
            return compute()
        path = self.folder / f"{part}.txt.gz"
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
            return text.split("\n") if text else []
        values = compute()
        def write(f) -> None:
            with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0) as z:
                z.write("\n".join(values).encode("utf-8"))

        replace_atomically(path, write)  # SIGTERM and Ctrl-C leave no temporary file behind
        return values

    def arrays(self, part: str, compute: Callable[[], dict[str, np.ndarray]],
               legacy: tuple[str, list[str]] | None = None) -> dict[str, np.ndarray]:
        if self.folder is None:
            return compute()
        if legacy is not None and not (self.folder / f"{part}.npz").is_file():
            compute = _adopting(legacy, compute)
        return cached_npz(self.folder / f"{part}.npz", part, compute, compressed=True)


def _adopting(legacy: tuple[str, list[str]], compute: Callable[[], dict[str, np.ndarray]]
              ) -> Callable[[], dict[str, np.ndarray]]:
    """``compute``, or the same statistic from a refstats file written before the bundles, when that
    was computed on the very same SMILES (its stored digest says so): a one-time conversion that
    saves recomputing ChemNet and the MOSES statistics. Remove once no such caches are left."""
    def adopt() -> dict[str, np.ndarray]:
        name, smiles = legacy
        digest = digest_strings(smiles)
        folder = cache_dir("refstats")
        for path in (folder / f"{name}.npz", folder / f"{name}.v1.rdkit{rdkit.__version__}.npz"):
            try:
                with np.load(path, allow_pickle=False) as f:
                    if str(f["digest"]) in (digest, digest[:16]):
                        return {k: f[k] for k in f.files if k not in ("digest", "n")}
            except (OSError, KeyError, ValueError):
                continue
        return compute()

    return adopt


@dataclass(eq=False)
class Reference:
    """A resolved reference. ``comparison``: the SMILES compared with; ``has_training``: whether it
    has a training set (novelty and the MOSES / GuacaMol block, :func:`molgen.evaluate`)."""

    name: str                                   # "qm9", "moses", or the file's path
    label: str                                  # how tables name the comparison set
    _comparison: Callable[[], list[str]]
    _training: Callable[[], list[str]] | None = None
    _draw: Callable[[], list[str]] | None = None
    bundle: _Bundle = field(default_factory=lambda: _Bundle(None))
    legacy: tuple[str, str] | None = None       # refstats names before the bundles: comparison, draw
    others: tuple["Reference", ...] = ()        # further comparison sets (MOSES: the scaffold test set)
    notes: tuple[str, ...] = ()                 # what evaluate should say about it (e.g. a missing set)

    @property
    def has_training(self) -> bool:
        return self._training is not None

    @property
    def comparison(self) -> list[str]:
        return self._memo("comparison", lambda: self.bundle.strings("comparison", self._comparison))

    @property
    def training(self) -> frozenset[str] | None:
        """Canonical non-isomeric SMILES of the training set (None for a file reference)."""
        if self._training is None:
            return None
        return self._memo("training", lambda: frozenset(self.bundle.strings("training", self._legacy_training)))

    def _legacy_training(self) -> list[str]:
        """The training set, or the file ``training_smiles`` kept it in before the bundles (a one-time
        conversion: same data, same RDKit version; remove once no such caches are left)."""
        path = cache_dir("refstats") / f"{self.name}-train-smiles.v1.rdkit{rdkit.__version__}.txt.gz"
        if self.legacy is not None and path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read().split()
        return self._training()

    @property
    def guacamol_draw(self) -> list[str] | None:
        """GuacaMol's seeded draw of :data:`GUACAMOL_N` training molecules: distinct canonical SMILES
        without stereo (None for a file reference)."""
        if self._draw is None:
            return None
        return self._memo("draw", lambda: self.bundle.strings("guacamol-draw", self._draw))

    def properties(self) -> dict[str, np.ndarray]:
        """QED, SA, logP and weight of the comparison set (:func:`molgen.metrics.properties.property_table`)."""
        from .metrics.properties import property_table

        return self._memo("properties", lambda: self.bundle.arrays(
            "properties", lambda: property_table(self.comparison, _PROGRESS.get(), f"{self.label}: properties"),
            self._legacy("properties")))

    def moses_stats(self) -> Any:
        """:class:`~molgen.metrics.moses.MosesReference` of the comparison set (SNN, Frag, Scaf)."""
        from .metrics.moses import MosesReference, moses_reference

        return self._memo("moses", lambda: MosesReference.from_arrays(self.bundle.arrays(
            "moses", lambda: moses_reference(self.comparison, _PROGRESS.get(), self.label).to_arrays(),
            self._legacy("moses"))))

    def chemnet(self, part: str = "comparison") -> tuple[np.ndarray, np.ndarray]:
        """ChemNet (mu, sigma) of the comparison set, or of GuacaMol's draw with ``part="draw"``."""
        from .metrics.fcd import chemnet_stats

        smiles = self.comparison if part == "comparison" else self.guacamol_draw

        def compute() -> dict[str, np.ndarray]:
            what = self.label if part == "comparison" else "GuacaMol draw"
            mu, sigma = chemnet_stats(smiles, progress=_PROGRESS.get(), desc=f"{what}: ChemNet")
            return {"mu": mu, "sigma": sigma}

        arrays = self._memo(f"chemnet-{part}", lambda: self.bundle.arrays(
            f"chemnet-{part}", compute, self._legacy("chemnet", draw=part != "comparison")))
        return arrays["mu"], arrays["sigma"]

    def kl_stats(self) -> Any:
        """GuacaMol's :class:`~molgen.metrics.guacamol.KLReference` of the draw."""
        from .metrics.guacamol import KLReference, kl_reference

        def compute() -> dict[str, np.ndarray]:
            ref = kl_reference(self.guacamol_draw)
            return {"descriptors": ref.descriptors, "nn_similarity": ref.nn_similarity}

        arrays = self._memo("kl", lambda: self.bundle.arrays("guacamol-kl", compute,
                                                             self._legacy("guacamol-kl", draw=True)))
        return KLReference(arrays["descriptors"], arrays["nn_similarity"])

    def _legacy(self, part: str, draw: bool = False) -> tuple[str, list[str]] | None:
        if self.legacy is None:
            return None
        return f"{self.legacy[draw]}.{part}", self.guacamol_draw if draw else self.comparison

    def _memo(self, key: str, compute: Callable[[], Any]) -> Any:
        memo = self.__dict__.setdefault("_values", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]


def _bundle(name: str, *content: str) -> _Bundle:
    key = hashlib.sha256("\n".join((f"v{BUNDLE_VERSION}", rdkit.__version__, *content)).encode()).hexdigest()[:16]
    folder = cache_dir("refstats", f"{name}-{key}")
    return _Bundle(folder)


def _canonical_unique(smiles: list[str]) -> list[str]:
    """Distinct canonical non-isomeric SMILES of the valid ones, in first-seen order."""
    return list(dict.fromkeys(c for c in map(canonicalize, smiles) if c))


def _guacamol_draw(train: list[str]) -> list[str]:
    from .metrics.guacamol import random_subset

    return _canonical_unique(random_subset(train, min(GUACAMOL_N, len(train)), seed=GUACAMOL_SEED))


# --- the training sets ---------------------------------------------------------------------------
def _canonical_chunk(smiles: list[str]) -> list[str | None]:
    return [canonicalize(s) for s in smiles]


def _canonical_parallel(smiles: list[str], chunk: int = 20_000, desc: str = "canonicalise") -> list[str | None]:
    """Canonicalise many SMILES, on all cores when there are many (a bar inside :func:`showing_progress`)."""
    from tqdm import tqdm

    from .metrics._progress import disable_flag

    workers = min(os.cpu_count() or 1, 8)
    parts = [smiles[k:k + chunk] for k in range(0, len(smiles), chunk)]
    out: list[str | None] = []
    with ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(smiles), desc=desc, unit="mol", leave=False, dynamic_ncols=True,
                                       disable=disable_flag(_PROGRESS.get())))
        if len(smiles) < 4 * chunk or workers < 2:
            done = map(_canonical_chunk, parts)
        else:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers)
            # on Ctrl-C or an error, drop the chunks not started (a plain ``with`` would wait for all of them)
            stack.callback(lambda: pool.shutdown(wait=True, cancel_futures=True))
            done = pool.map(_canonical_chunk, parts)
        for part in done:
            out.extend(part)
            bar.update(len(part))
    return out


def _qm9_training() -> list[str]:
    """QM9's SMILES column for the train split, united with the largest-fragment SMILES of the train
    molecules built from their 3D geometry with EDM's bonds (so a generated molecule that reproduces a
    training geometry is not counted as novel when the two SMILES differ)."""
    from .datasets.qm9 import indices, load_qm9_arrays

    arrays = load_qm9_arrays()
    idx = indices("train")
    found = set(_canonical_chunk(arrays.smiles[idx].tolist()))
    zs, xs = zip(*(arrays.molecule(i) for i in idx))
    found.update(to_smiles(m, largest_fragment=True) for m in mols_from_3d(zs, xs))
    return sorted(found - {None})


def _moses_training() -> list[str]:
    """The MOSES train file, re-canonicalised with the installed RDKit."""
    from .datasets.moses import load_moses

    return sorted(set(_canonical_parallel(load_moses("train"), desc="MOSES train: canonicalise")) - {None})


# --- resolving ------------------------------------------------------------------------------------
def _qm9() -> Reference:
    from .datasets.qm9 import content_digest, qm9_smiles

    return Reference("qm9", "QM9 test", lambda: [s for s in map(canonicalize, qm9_smiles("test")) if s],
                     _qm9_training, lambda: _guacamol_draw(qm9_smiles("train")),
                     _bundle("qm9", content_digest()), legacy=("qm9-test", "qm9-train-10k-guacamol"))


def _moses() -> Reference:
    from .datasets.moses import load_moses, moses_dir

    files = [moses_dir() / f for f in ("train.csv.gz", "test.csv.gz")]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"the MOSES files are missing from {moses_dir()}; "
                                "run `python -m molgen.datasets.moses fetch` first")
    return Reference("moses", "Test", lambda: load_moses("test"), _moses_training,
                     lambda: _guacamol_draw(load_moses("train")), _bundle("moses", digest_files(files)),
                     legacy=("moses-test", "moses-train-10k"), **_moses_scaffold_test())


def _moses_scaffold_test() -> dict[str, Any]:
    """MOSES' scaffold test set (``TestSF``: scaffolds absent from its training set) as a further
    comparison set, with a bundle of its own (the Test / train bundle stays valid without it); a
    note instead when its file is missing (fetched before molgen kept it)."""
    from .datasets.moses import FETCH_COMMAND, load_moses, moses_dir

    path = moses_dir() / "test_scaffolds.csv.gz"
    if not path.is_file():
        return {"notes": (f"TestSF metrics not computed: {path} is missing; run `{FETCH_COMMAND}`",)}
    testsf = Reference("moses/TestSF", "TestSF", lambda: load_moses("test_scaffolds"),
                       bundle=_bundle("moses-testsf", digest_files([path])))
    return {"others": (testsf,)}


def _file(path: Path) -> Reference:
    result = read_molecules(path)
    positions = [r.positions for r in result.records]
    if result.records and all(x is not None and x.size for x in positions):
        smiles = [to_smiles(m, largest_fragment=True)
                  for m in mols_from_3d([r.atomic_numbers for r in result.records], positions)]
    else:
        smiles = [to_smiles(to_mol(m)) for m in result.mols]
    valid = [s for s in smiles if s]
    if not valid:
        raise ValueError(f"the reference file {path} holds no valid molecule")
    # A small reference file is cheaper to recompute than to leave a cache folder behind for.
    bundle = (_bundle("file", digest_strings(valid)) if len(valid) >= CACHE_FILE_REFERENCES_FROM
              else _Bundle(None))
    return Reference(str(path), path.name, lambda: valid, bundle=bundle)


@lru_cache(maxsize=8)
def _named(name: str) -> Reference:
    return _qm9() if name == "qm9" else _moses()


def resolve(reference: "str | os.PathLike | Reference | None") -> Reference | None:
    """The :class:`Reference` named by ``reference``: ``"qm9"``, ``"moses"``, a molecule file's path,
    or None / ``"none"`` (None).

    Raises ValueError for an unknown name, :class:`~molgen.chem.io.MoleculeFileError` for a missing
    or unreadable file, FileNotFoundError when a named reference's data are missing.
    """
    if reference is None or isinstance(reference, Reference):
        return reference
    if isinstance(reference, str) and reference.lower() in NO_REFERENCE:
        return None
    if isinstance(reference, str) and reference.lower() in REFERENCES:
        return _named(reference.lower())
    path = Path(reference)
    if path.exists():
        return _file(path)
    if path.suffix or len(path.parts) > 1:
        raise MoleculeFileError(f"reference file not found: {path}")
    raise ValueError(f"unknown reference {str(reference)!r}: choose one of {', '.join(REFERENCES)}, none, "
                     "or the path of a molecule file (.sdf, .xyz, .smi, .csv)")


def training_smiles(name: str) -> frozenset[str]:
    """Canonical non-isomeric SMILES of a named reference's training set, computed once and cached."""
    if name not in REFERENCES:
        raise ValueError(f"no training set named {name!r}; choose one of {', '.join(REFERENCES)}")
    return resolve(name).training
