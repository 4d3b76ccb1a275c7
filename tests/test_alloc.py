"""The allocator settings the CLIs apply (glibc malloc thresholds)."""
import subprocess
import sys


def test_cli_processes_tune_malloc_and_the_switch_turns_it_off() -> None:
    code = ("import molgen._alloc as a; from molgen._cli import run_cli; "
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
