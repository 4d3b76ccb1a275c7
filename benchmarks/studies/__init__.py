"""Single-purpose studies: each script measures one thing and writes its result under
``benchmarks/results/`` (or, through :func:`molgen.models.card.update_card`, into a shipped
checkpoint's model card). Run them from the repository root as modules::

    python -m benchmarks.studies.bench_edm --device cuda        # EDM speed at several sizes
    python -m benchmarks.studies.bench_edm_throughput           # EDM training / sampling throughput
    python -m benchmarks.studies.bench_ar speed                 # AR sampling speed
    python -m benchmarks.studies.bench_ar quality --dataset qm9 # AR checkpoint quality -> its model card
    python -m benchmarks.studies.bench_vae [--quality]          # VAE speed, or quality -> its model card
    python -m benchmarks.studies.bench_vae_featurisation        # VAE featurisation cost on MOSES
    python -m benchmarks.studies.edm_quality                    # EDM checkpoint quality -> its model card
    python -m benchmarks.studies.bench_evaluate                 # cost of each step of molgen.evaluate (3D)
    python -m benchmarks.studies.bench_fcd                      # cost of each step of FCD
    python -m benchmarks.studies.qm9_novelty                    # where novel QM9 samples come from
    python -m benchmarks.studies.qm9_data_row                   # the QM9 test split scored as "data"

They share :mod:`benchmarks.timing` for clocks and the machine description. The benchmark suite
itself is the package :mod:`benchmarks` (``python -m benchmarks.run``).
"""
from pathlib import Path

#: Where the studies write their results (``benchmarks/results``).
RESULTS = Path(__file__).resolve().parents[1] / "results"
