"""The GPU burst's travel: QM9's packing round trip, and room in the 64 MiB that a device call may send."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_burst.qm9_travel import _decode_positions, _encode_positions
from benchmarks.gpu_burst.travel_size import LIMIT_BYTES, travelling_files

ROOT = Path(__file__).resolve().parents[1]
QM9_CARRY_BYTES = 9 * 2 ** 20  # the packed QM9 training split with its properties (8.7 MiB)


def test_packed_coordinates_come_back_exactly_including_int16_wrap_around() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(-2 ** 15, 2 ** 15, size=(1000, 3)).astype(np.int16)  # differences overflow int16
    q[:10] = [[-32768, 32767, 0]] * 5 + [[32767, -32768, 1]] * 5
    assert np.array_equal(_decode_positions(_encode_positions(q), len(q)), q)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_tree_leaves_room_for_the_qm9_carry_of_a_gpu_burst() -> None:
    try:
        files = travelling_files(ROOT)
    except subprocess.CalledProcessError:
        pytest.skip("git cannot list this checkout")
    tree = sum(f.stat().st_size for f in files)
    assert tree + QM9_CARRY_BYTES <= LIMIT_BYTES, (
        f"the working tree ({tree / 2 ** 20:.1f} MiB) leaves less than the QM9 carry "
        f"({QM9_CARRY_BYTES / 2 ** 20:.0f} MiB) of the 64 MiB a device call may send; "
        f"see python -m benchmarks.gpu_burst.travel_size")
