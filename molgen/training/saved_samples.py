"""Training from a pre-encoded set on a machine without RDKit (``molgen train --encoded-data DIR``, for the
``ar`` and ``vae`` models), and its learning curve: each evaluation computes what needs no RDKit there
and keeps its samples in the run folder (:class:`SavedSampleEvaluator`); :func:`score_saved_samples`
scores them later where RDKit is.

The folder ``<run>/eval_samples`` holds, per evaluation at step N, ``step-N.npz`` (samples drawn with the
valence masks) and ``step-N-nomask.npz`` (without), in the model's own raw form (the AR's action
sequences, the VAE's decoded graphs: :data:`SAMPLE_READERS` turns them into Mols), and for a model that
reconstructs held-out molecules ``step-N-recon.npz`` beside the targets, ``heldout-targets.npz``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from .._atomic import replace_atomically
from ..models.base import GenerativeModel

#: seeds of the two sample files of each evaluation: (file suffix, valence masks on, seed)
SAMPLE_FILES = (("", True, 1234), ("-nomask", False, 4321))
TARGETS = "heldout-targets.npz"


def read_encoded_sets(folder: Path, load: Callable[[Path], Any], what: str,
                      model_cfg: dict[str, Any]) -> tuple[Any, Any]:
    """The training and held-out sets of an ``--encoded-data`` folder (``train.npz``, ``heldout.npz``), read
    by ``load``; one error line where a file cannot be read or conditions are asked for."""
    if model_cfg.get("conditions"):
        raise ValueError("--encoded-data trains without conditions (their values are computed from the SMILES "
                         "with RDKit); drop --conditions")
    sets = []
    for name in ("train", "heldout"):
        try:
            sets.append(load(folder / f"{name}.npz"))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot read the {what} set {folder / name}.npz: {exc}") from None
    return sets[0], sets[1]


class SavedSampleEvaluator:
    """The learning curve without RDKit: ``heldout(model, folder, step)`` gives the held-out scores (and may
    keep files in ``folder``, None when the trainer gives no run folder), and ``write(model, n, seed, mask,
    path)`` keeps ``n`` samples with the valence masks and ``n`` without as ``eval_samples/step-<N>.npz``
    and ``step-<N>-nomask.npz`` for :func:`score_saved_samples`."""

    def __init__(self, heldout: Callable[[GenerativeModel, Path | None, int], dict[str, float]],
                 write: Callable[[GenerativeModel, int, int, bool, Path], None], n: int) -> None:
        self.heldout, self.write, self.n = heldout, write, n

    def __call__(self, model: GenerativeModel, out_dir: Path | None = None, step: int | None = None
                 ) -> dict[str, float]:
        step = step if step is not None else 0
        folder = Path(out_dir) / "eval_samples" if out_dir is not None else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        row = {**self.heldout(model, folder, step), "eval_samples": self.n}
        if folder is not None:
            for suffix, mask, seed in SAMPLE_FILES:
                self.write(model, self.n, seed, mask, folder / f"step-{step}{suffix}.npz")
        return row


def _ar_mols(path: Path) -> list:
    from ..models.ar.actions import EncodedSet
    from ..models.ar.encoding import molecules_from_actions

    return molecules_from_actions(EncodedSet.load(path))


def _vae_mols(path: Path) -> list:
    from ..models.vae.graphs import load_decoded
    from ..models.vae.model import graph_mols

    return graph_mols(*load_decoded(path))


#: model name -> the (unsanitised) Mols of one of its sample files
SAMPLE_READERS: dict[str, Callable[[Path], list]] = {"ar": _ar_mols, "vae": _vae_mols}


def score_saved_samples(run: Path, reference: str | None, fcd: bool = True) -> list[dict[str, Any]]:
    """Score the samples a :class:`SavedSampleEvaluator` kept in ``run`` into its learning curve (in
    ``metrics.json``, rewritten atomically): validity and uniqueness of the masked samples, with
    ``reference`` ("moses": novelty against its training set, FCD against its test set) those too, the
    validity of the unmasked ones, and where reconstructions were kept, the fraction of held-out molecules
    decoded back to the same canonical SMILES. Rows already scored, or without their samples, stay as they
    are. Returns the curve."""
    from ..evaluation import evaluate
    from ..models.checkpoint import read_config
    from ..samples import SampleSet

    run = Path(run)
    name = read_config(run)["model"]
    if name not in SAMPLE_READERS:
        raise ValueError(f"{run} holds a {name} run; saved samples are scored for {', '.join(SAMPLE_READERS)}")
    to_mols = SAMPLE_READERS[name]

    def smiles(path: Path) -> Sequence[str | None]:
        return SampleSet.from_mols(to_mols(path), model=name).smiles

    path = run / "metrics.json"
    card = json.loads(path.read_text())
    folder = run / "eval_samples"
    targets = None
    for row in card.get("learning_curve", []):
        masked = folder / f"step-{row['step']}.npz"
        raw, recon = (masked.with_name(f"step-{row['step']}{s}.npz") for s in ("-nomask", "-recon"))
        if row.get("validity") is not None or not masked.is_file():
            continue
        samples = SampleSet.from_mols(to_mols(masked), model=name)
        result = evaluate(samples, reference=reference, fcd=fcd).metrics
        row.update({k: result[k] for k in ("validity", "uniqueness", "novelty", "fcd") if k in result})
        if raw.is_file():
            row["validity_no_mask"] = SampleSet.from_mols(to_mols(raw), model=name).validity
        if recon.is_file() and (folder / TARGETS).is_file():
            targets = targets if targets is not None else smiles(folder / TARGETS)
            got = smiles(recon)
            row["reconstruction"] = sum(a is not None and a == b for a, b in zip(got, targets)) / max(len(got), 1)
        row["scored_by"] = "molgen.training.saved_samples.score_saved_samples (RDKit, after the run)"
    text = json.dumps(card, indent=2)
    replace_atomically(path, lambda f: f.write(text.encode()))
    return card.get("learning_curve", [])
