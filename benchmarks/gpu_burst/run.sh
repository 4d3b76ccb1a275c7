#!/usr/bin/env bash
# One GPU burst for EDM (run on the device machine from the repository root; tested on a CPU with a
# tiny budget: `MINUTES=0.2 DEVICE=cpu bash benchmarks/gpu_burst/run.sh`).
#
# Three runs share the GPU for MINUTES each, pinned to separate CPU cores, evaluating EVAL_N molecules
# every EVAL_MINUTES (stability on the GPU machine, which has no RDKit; the samples are kept for
# validity here):
#   A  the shipped edm-qm9 resumed exactly with EDM's objective, size-bucketed batches
#   B  the shipped edm-qm9 resumed with min-SNR weighting (same network, another loss weighting)
#   C  a fresh 128x6 model with the x0 parameterisation and EQGAT-diff's clamped-SNR weighting
# Everything comes back under $OUT as at most 8 files of < 16 MiB: each run folder is a tar split
# into 15 MiB parts (A and B with their full train state; C without its optimizer state if the
# total would pass 64 MiB), plus the logs. `python -m benchmarks.gpu_burst.collect FILES_AT` unpacks
# them here into runs/gpu-burst/<run>/ and scores the saved samples with RDKit.
#
# Needs .devcarry/qm9_travel.npz (python -m benchmarks.gpu_burst.qm9_travel pack .devcarry/qm9_travel.npz)
# carried with the call (carry: [".devcarry"]). Before the call, check that it all fits the 64 MiB a call
# may send: python -m benchmarks.gpu_burst.travel_size --carry .devcarry (tests/test_gpu_burst.py keeps
# room for it in the tracked tree).
set -uo pipefail
MINUTES=${MINUTES:-6}
EVAL_MINUTES=${EVAL_MINUTES:-2}
EVAL_N=${EVAL_N:-1000}
BATCH=${BATCH:-512}
LR=${LR:-4e-4}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-burst-out}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 MOLGEN_CACHE=${MOLGEN_CACHE:-/tmp/molgen-cache}
mkdir -p "$OUT" runs/gpu-burst
$PY -m benchmarks.gpu_burst.qm9_travel unpack .devcarry/qm9_travel.npz || exit 1
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/machine.txt"

rm -rf runs/gpu-burst/A runs/gpu-burst/B runs/gpu-burst/C
cp -r molgen/pretrained/edm-qm9 runs/gpu-burst/A
cp -r molgen/pretrained/edm-qm9 runs/gpu-burst/B
printf '{"model": {"default_sampling_steps": 100}}\n' > runs/gpu-burst/A.json
printf '{"model": {"loss_weighting": "min_snr", "default_sampling_steps": 100}}\n' > runs/gpu-burst/B.json
printf '{"model": {"hidden": 128, "n_layers": 6, "parameterization": "x0", "loss_weighting": "snr_clamp", "default_sampling_steps": 100}, "train": {"compile": true, "ema_decay": 0.999, "checkpoint_every": 2000, "log_every": 200}}\n' > runs/gpu-burst/C.json
COMMON=(--device "$DEVICE" --max-minutes "$MINUTES" --eval-minutes "$EVAL_MINUTES" --eval-samples "$EVAL_N"
        --buckets 12,16,20,24,29 --batch-size "$BATCH" --lr "$LR" --warmup-steps 500 --checkpoint-every 2000 --no-progress)
pin() { if command -v taskset >/dev/null && [ "$(nproc)" -ge 15 ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
pin 0-4 $PY -m molgen.train --model edm --resume runs/gpu-burst/A --config runs/gpu-burst/A.json "${COMMON[@]}" > "$OUT/A.log" 2>&1 &
pin 5-9 $PY -m molgen.train --model edm --resume runs/gpu-burst/B --config runs/gpu-burst/B.json "${COMMON[@]}" > "$OUT/B.log" 2>&1 &
pin 10-14 $PY -m molgen.train --model edm --out runs/gpu-burst/C --config runs/gpu-burst/C.json "${COMMON[@]}" > "$OUT/C.log" 2>&1 &
wait
for r in A B C; do echo "== $r: $(tail -n 1 "$OUT/$r.log")"; done

# pack: every file < 16 MiB, at most 8 files, 64 MiB in all
tar -C runs/gpu-burst -cf - A | split -b 15M -d - "$OUT/A.tar."
tar -C runs/gpu-burst -cf - B | split -b 15M -d - "$OUT/B.tar."
used=$(du -cb "$OUT"/*.tar.* | tail -n 1 | cut -f1)
c_full=$(du -sb runs/gpu-burst/C | cut -f1)
if [ $((used + c_full)) -lt $((60 * 1024 * 1024)) ]; then
  tar -C runs/gpu-burst -cf - C | split -b 15M -d - "$OUT/C.tar."
else  # weights, config, metrics, logs and samples of C; its optimizer state stays behind
  tar -C runs/gpu-burst -cf "$OUT/C-weights.tar" --exclude 'train_state*' --exclude checkpoint.json C
fi
tar -C "$OUT" -czf "$OUT/logs.tgz" A.log B.log C.log $( [ -f "$OUT/machine.txt" ] && echo machine.txt )
rm -f "$OUT"/A.log "$OUT"/B.log "$OUT"/C.log "$OUT/machine.txt"
ls -la "$OUT"
