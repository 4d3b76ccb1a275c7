"""The allocator settings the CLIs apply (glibc malloc thresholds)."""
import subprocess
import sys

from conftest import NO_RDKIT


def test_cli_processes_tune_malloc_and_the_switch_turns_it_off() -> None:
    code = ("import molgen._alloc as a; from molgen.cli.common import run_cli; "
            "run_cli(lambda: print(a._done) or 0)")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "MOLGEN_NO_MALLOPT": "1"})
    assert on.returncode == 0 and off.returncode == 0
    if sys.platform.startswith("linux"):
        assert on.stdout.strip() == "True"
    assert off.stdout.strip() == "False"


def test_importing_molgen_does_not_change_the_allocator() -> None:
    out = subprocess.run([sys.executable, "-c", "import molgen, molgen._alloc as a; molgen.load; print(a._done)"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_edm_sampling_on_a_cpu_tunes_malloc_unless_switched_off() -> None:
    code = ("import molgen._alloc as a; from molgen.models.edm import EDM; "
            "m = EDM(hidden=8, n_layers=1, atom_count_hist=[0, 0, 1]); print(a._done); "
            "m.sample_arrays(1, steps=1); print(a._done)")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "MOLGEN_NO_MALLOPT": "1"})
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    if sys.platform.startswith("linux"):
        assert on.stdout.split() == ["False", "True"]
    assert off.stdout.split() == ["False", "False"]


def test_edm_trains_without_rdkit(tmp_path) -> None:
    """A bare GPU machine has no RDKit: EDM's training path (the conditional one and the property
    predictor's too) and its stability check must not need it."""
    code = NO_RDKIT + (
        "from molgen.models import model_class\n"
        "from molgen.training.edm import sample_quality\n"
        "import molgen.cli.train, molgen.cli.train_predictor, molgen.training.qm9_predictor  # runs D and P\n"
        "from molgen.training.conditions import ConditionedData, condition_stats\n"
        "print('classes:', [model_class(m).name for m in ('ar', 'edm', 'vae')])  # ar and vae train without it too\n"
        "import numpy as np\n"
        "q = sample_quality([np.array([8, 1, 1])], [np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]])])\n"
        "print(q)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "classes: ['ar', 'edm', 'vae']" in out.stdout
    assert "'validity': None" in out.stdout and "'atom_stability': 1.0" in out.stdout

