"""Record what the shipped models and ``molgen.evaluate`` produce today, for the behaviour pins.

    python -m tests.pins.record              # rewrites tests/pins/pins.json and the sample files beside it
    python -m tests.pins.record --reference  # adds evaluate's numbers against the references (slow, cold cache)
    python -m tests.pins.record --only edm-qm9 [--reference]  # one model (comma-separated names): others stay

Run it only when a change of behaviour is intended; ``tests/test_pins.py`` compares against the file.
Samples are pinned by a digest of their SMILES (and, for 3D models, their atom types), 3D coordinates
to 0.01 Angstrom (so that a reordered float sum on another CPU does not count as a change), likelihoods
and metrics to a relative 1e-5.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PIN_FILE = HERE / "pins.json"
SMILES = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C1CC1N", "OC(=O)C=C"]
#: checkpoint -> (number of samples, sampling arguments)
SAMPLING = {"ar-qm9": (64, {}), "ar-moses": (32, {}), "vae-qm9": (64, {}), "vae-moses": (32, {}),
            "edm-qm9": (6, {"steps": 40})}


def sample_digest(out: Any) -> str:
    """SMILES and, for 3D models, atom types: exact. Coordinates are compared to a tolerance instead
    (``sample_positions``), because a CPU with other vector units reorders float sums and a digest of
    rounded coordinates flips wherever a value lies near a rounding boundary."""
    h = hashlib.sha256()
    h.update(json.dumps([s or "" for s in out.smiles]).encode())
    if out.positions is not None:
        for z in out.atomic_numbers:
            h.update(np.asarray(z, dtype=np.int64).tobytes())
    return h.hexdigest()


def sample_positions(out: Any) -> list[list[list[float]]] | None:
    """Coordinates of a 3D sample, rounded to 1e-4 Angstrom for the pin file."""
    if out.positions is None:
        return None
    return [np.round(np.asarray(x, dtype=np.float64), 4).tolist() for x in out.positions]


def _floats(values: Any) -> list[float | None]:
    return [None if v is None or not math.isfinite(float(v)) else float(v) for v in np.asarray(values, dtype=float)]


def record_model(name: str) -> tuple[dict[str, Any], Any]:
    import molgen

    n, kwargs = SAMPLING[name]
    model = molgen.load(name)
    out = model.sample(n, seed=0, **kwargs)
    pin: dict[str, Any] = {"n": n, "kwargs": kwargs, "digest": sample_digest(out),
                           "smiles": list(out.smiles), "validity": out.validity}
    if out.positions is not None:
        pin["positions"] = sample_positions(out)
    if name.startswith("edm"):
        pin["log_likelihood"] = _floats(model.log_likelihood(out[:2], n_t=2, seed=0))
    elif name.startswith("vae"):
        pin["log_likelihood"] = _floats(model.log_likelihood(SMILES, seed=0))
    else:
        pin["log_likelihood"] = _floats(model.log_likelihood(SMILES))
    return pin, out


def sample_file(name: str) -> Path:
    return HERE / (f"{name}.sdf" if name.startswith("edm") else f"{name}.smi")


def reference_for(file: str) -> str:
    return "moses" if "moses" in file else "qm9"


def fcd_for(file: str) -> bool:
    """ChemNet against QM9's reference only: MOSES' comparison set would need hours of ChemNet on a CPU."""
    return reference_for(file) == "qm9"


def evaluate_file(path: Path, reference: str | None = None, fcd: bool = False) -> dict[str, Any]:
    """The numbers ``molgen.evaluate`` gives for a sample file: its counts and metrics (NaN as None)."""
    import molgen

    result = molgen.evaluate(str(path), reference=reference, fcd=fcd).as_dict()
    numbers = {"n_molecules": result["n_molecules"], "n_unreadable": result["n_unreadable"], **result["metrics"]}
    return {k: _floats([v])[0] for k, v in sorted(numbers.items())}


def main() -> None:
    args = sys.argv[1:]
    only = args[args.index("--only") + 1:][:1] if "--only" in args else None
    only = only[0].split(",") if only else (None if "--only" not in args else [])
    if only is not None and (not only or not set(only) <= set(SAMPLING)):
        raise SystemExit(f"error: --only takes names among {', '.join(SAMPLING)}")
    if "--reference" in args:
        pins = json.loads(PIN_FILE.read_text())
        pins.setdefault("evaluate_reference", {})
        for file in pins["evaluate"]:
            if only is None or any(sample_file(name).name == file for name in only):
                pins["evaluate_reference"][file] = evaluate_file(HERE / file, reference_for(file), fcd=fcd_for(file))
                print(file, "against", reference_for(file), flush=True)
        PIN_FILE.write_text(json.dumps(pins, indent=1, allow_nan=False) + "\n")
        print(f"wrote {PIN_FILE}")
        return
    if only:  # re-record these models; the others' pins stay as they are
        pins = json.loads(PIN_FILE.read_text())
        for name in only:
            pins.get("evaluate_reference", {}).pop(sample_file(name).name, None)
    else:
        pins = {"models": {}, "evaluate": {}, "evaluate_reference": {}}
    for name in only or SAMPLING:
        pin, out = record_model(name)
        pins["models"][name] = pin
        path = sample_file(name)
        (out.to_sdf if path.suffix == ".sdf" else out.to_smiles)(path)
        pins["evaluate"][path.name] = evaluate_file(path)
        print(name, pin["digest"][:12], f"validity {pin['validity']:.3f}")
    PIN_FILE.write_text(json.dumps(pins, indent=1, allow_nan=False) + "\n")
    print(f"wrote {PIN_FILE}" + (" (then --reference" + (f" --only {','.join(only)}" if only else "") + ")"))


if __name__ == "__main__":
    main()
