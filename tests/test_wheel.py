"""The package as a user gets it: the built wheel, installed into a fresh virtual environment without
the ``qm9`` extra, used from another folder.

    python -m pytest -q -m wheel tests/test_wheel.py      # tests/run.sh runs this after the suite

The wheel is built from a clean copy of the source tree (git's tracked and untracked, not ignored
files), so nothing stale in build/ can leak into it. The venv has no system site-packages; its
packages come from the wheelhouse ``.whl/`` (``$MOLGEN_WHEELHOUSE``), which the first run fills
from pip's index (``pip download``) so that later runs install offline. torch is pinned by
constraints.txt. The commands share the user's molgen cache (``$MOLGEN_CACHE``), as a user's
second session would, except where a test sets up its own.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(os.environ.get("MOLGEN_WHEELHOUSE", ROOT / ".whl"))
SHIPPED = ("ar-moses", "ar-moses-cond", "ar-qm9", "ar-qm9-cond", "edm-qm9", "vae-moses", "vae-qm9")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900,
         check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        pytest.fail(f"{' '.join(map(str, cmd))} exited with {proc.returncode}:\n{tail}", pytrace=False)
    return proc


def _source_copy(dest: Path) -> Path:
    files = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], ROOT).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _setuptools_is_recent() -> bool:
    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:  # not installed
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("build")
    src = _source_copy(work / "src")
    # This environment's setuptools when it is recent enough (no index needed), else pip's isolated build.
    flags = ["--no-build-isolation"] if _setuptools_is_recent() else []
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *flags, "-w", work / "dist", src], work)
    (found,) = (work / "dist").glob("molgen_models-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel and its dependencies (not the qm9 extra); returns its python."""
    work = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", work / "venv"], work)
    python = work / "venv" / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]  # this pip installs into the venv
    constraints = ["-c", ROOT / "constraints.txt"]
    offline = [*pip, "install", "-q", "--no-compile", "--no-index", "--find-links", WHEELHOUSE, *constraints, wheel]
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    if _run(offline, work, check=False).returncode != 0:  # first run: fill the wheelhouse from the index
        _run([sys.executable, "-m", "pip", "download", "-q", *constraints, "-d", WHEELHOUSE, wheel], work)
        for stale in WHEELHOUSE.glob("molgen_models-*.whl"):
            stale.unlink()
        _run(offline, work)
    return python


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """An empty folder outside the repository to run the commands from."""
    return tmp_path_factory.mktemp("user")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def _py(venv: Path, code: str, cwd: Path, **env: str) -> str:
    return _run([venv, "-c", code], cwd, _env(**env)).stdout


def test_wheel_holds_the_data_configs_checkpoints_and_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert {"molgen/data/qm9_split.npz", "molgen/configs/edm-qm9.json", f"{info}/licenses/LICENSE"} <= names
    assert {f"molgen/configs/{p.name}" for p in (ROOT / "molgen" / "configs").glob("*.json")} <= names
    assert "molgen = molgen.cli:main" in zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    for name in SHIPPED:
        assert {f"molgen/pretrained/{name}/{f}" for f in ("config.json", "metrics.json", "weights.safetensors")} <= names
    assert {f"molgen/pretrained/vae-{d}/latent_head.{e}" for d in ("qm9", "moses") for e in ("json", "safetensors")} <= names
    shipped_files = {str(p.relative_to(ROOT)) for p in (ROOT / "molgen" / "pretrained").rglob("*") if p.is_file()}
    assert shipped_files <= names  # logs and train state too
    assert not any(n.startswith(("benchmarks/", "tests/", "data/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "Name: molgen-models" in meta and "Provides-Extra: qm9" in meta
    assert "Requires-Dist: qm9pack>=1.0; extra == \"qm9\"" in meta


def test_installed_package_reads_its_own_split_file(venv, elsewhere):
    out = _py(venv, (
        "import importlib.util, molgen\n"
        "from molgen.datasets import qm9\n"
        "def boom(*a, **k): raise SystemExit('make_split called')\n"
        "qm9.make_split = boom\n"
        "assert importlib.util.find_spec('qm9pack') is None, 'the qm9 extra should not be installed'\n"
        "print(molgen.__file__); print(qm9._split_file())\n"
        "print({k: qm9.indices(k).size for k in ('train', 'valid', 'test')})\n"), elsewhere)
    init, split, sizes = out.strip().splitlines()
    assert "site-packages" in init and str(ROOT) not in init
    assert split == str(Path(init).parent / "data" / "qm9_split.npz")
    assert sizes == "{'train': 100000, 'valid': 17748, 'test': 13083}"


def test_list_models_and_names_from_the_wheel(venv, elsewhere):
    out = _py(venv, (
        "import molgen\n"
        "print(' '.join(p.name for p in molgen.list_models()))\n"
        "m = molgen.load('edm-qm9', device='auto'); print(type(m).__name__, m.device)\n"
        "try:\n    molgen.load('edm', device='cuda')\nexcept ValueError as e:\n    print('error:', e)\n"), elsewhere)
    lines = out.strip().splitlines()
    assert lines[0] == " ".join(SHIPPED)
    assert lines[1] in ("EDM cpu", "EDM cuda:0")
    if lines[1] == "EDM cpu":
        assert lines[2].startswith("error: device 'cuda' asked for, but")


def test_sample_every_model_from_another_folder(venv, elsewhere):
    edm = _run([venv, "-m", "molgen.sample", "--model", "edm", "-n", "2", "--steps", "10", "--no-progress"],
               elsewhere, _env())
    assert len(edm.stdout.strip().splitlines()) == 2 and "2 molecules in" in edm.stderr
    _run([venv, "-m", "molgen.sample", "--model", "ar", "--dataset", "moses", "-n", "5", "--no-progress",
          "--output", "ar.smi"], elsewhere, _env())
    header, *rows = (elsewhere / "ar.smi").read_text().splitlines()
    assert header == "smiles name" and len(rows) == 5 and rows[0].split()[1] == "ar_sample_0"
    _run([venv, "-m", "molgen.sample", "--model", "vae", "-n", "5", "--no-progress", "--output", "vae.sdf"],
         elsewhere, _env())
    assert (elsewhere / "vae.sdf").read_text().count("$$$$") == 5


def test_the_console_script_lists_the_commands(venv, elsewhere):
    script = _run([venv.parent / "molgen", "--help"], elsewhere, _env()).stdout
    assert script == _run([venv, "-m", "molgen", "--help"], elsewhere, _env()).stdout
    assert all(f"  {name} " in script for name in ("sample", "evaluate", "train", "interpolate", "fetch"))


def test_evaluate_a_small_file(venv, elsewhere):
    (elsewhere / "small.smi").write_text("CCO\nc1ccccc1\nCC(=O)Nc1ccc(O)cc1\nnot-a-smiles\n")
    out = _run([venv, "-m", "molgen.evaluate", "small.smi"], elsewhere, _env()).stdout
    assert "reference: none" in out and "validity" in out


def test_without_the_qm9_extra_a_qm9_reference_names_the_extra(venv, elsewhere, tmp_path):
    proc = _run([venv.parent / "molgen", "evaluate", "small.smi", "--reference", "qm9"], elsewhere,
                _env(MOLGEN_CACHE=str(tmp_path / "empty-cache")), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: QM9 needs the qm9pack package (224 MB): "
                                   "pip install 'molgen-models[qm9]'")


def _small_moses_cache(cache: Path, rows: int = 300, train_rows: int = 10_000) -> None:
    """A molgen cache whose MOSES files are the first molecules of the real ones (fetched into the
    user's cache if missing): ``rows`` of test and scaffold test, ``train_rows`` of train (GuacaMol's
    reference draws 10,000), so the whole MOSES reference path runs in about a minute."""
    from molgen.datasets import moses

    real = moses.fetch()
    folder = cache / "moses"
    folder.mkdir(parents=True)
    for path in real.iterdir():
        if path.name.endswith(".csv.gz"):
            n = train_rows if path.name.startswith("train") else rows
            with gzip.open(path, "rt") as f:
                head = [next(f) for _ in range(n + 1)]
            with gzip.open(folder / path.name, "wt") as f:
                f.writelines(head)
        else:
            shutil.copy2(path, folder / path.name)


def test_a_moses_model_evaluates_against_moses_without_qm9pack(venv, elsewhere, tmp_path):
    cache = tmp_path / "cache"
    _small_moses_cache(cache)
    out = _py(venv, (
        "import importlib.util, molgen\n"
        "assert importlib.util.find_spec('qm9pack') is None\n"
        "out = molgen.load('ar-moses').sample(20, seed=0)\n"
        "r = molgen.evaluate(out.smiles, reference='moses', fcd=False)\n"  # ChemNet: the slow part
        "print(sorted(r.metrics))\n"), elsewhere, MOLGEN_CACHE=str(cache))
    for key in ("snn", "frag", "scaf", "novelty", "filters", "intdiv1", "kl_score", "qed_w1"):
        assert f"'{key}'" in out
    assert not (cache / "qm9").exists()


def test_readme_python_script(venv, elsewhere):
    """The README's "From Python" block, verbatim (QM9 from the user's cache, built by the suite's
    own QM9 tests or here; the venv itself has no qm9pack)."""
    from molgen.datasets.qm9 import load_qm9_arrays

    load_qm9_arrays()  # with this interpreter's qm9pack, once, into the user's cache
    text = (ROOT / "README.md").read_text()
    block = text.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "molgen.load(" in block and "log_likelihood" in block and "to_sdf" in block
    (elsewhere / "readme_script.py").write_text(block)
    proc = _run([venv, "readme_script.py"], elsewhere, _env())
    assert (elsewhere / "samples.sdf").exists() and "validity" in proc.stdout
