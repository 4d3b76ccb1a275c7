#!/usr/bin/env bash
# The MOSES part of a GPU burst: ar-moses trained on the GPU machine, which has no RDKit, from the
# linearised training split (python -m benchmarks.gpu_burst.moses_travel pack .devcarry/moses_ar.npz, here).
# A second device call, made at once after run.sh's (the machine stays warm for 30 s): the two calls cannot
# share one, since each may send 64 MiB (the tree and QM9, or the tree and MOSES) and bring back 8 files.
# Carry [".devcarry/moses_ar.npz"] and run `OUT=$OUT bash benchmarks/gpu_burst/run_moses.sh`.
# Tested on a CPU with a tiny budget and pack:
#   python -m benchmarks.gpu_burst.moses_travel pack /tmp/moses2k.npz --limit 2000
#   PACK=/tmp/moses2k.npz MINUTES=0.3 EVAL_MINUTES=0.1 EVAL_N=20 BATCH=16 DEVICE=cpu bash benchmarks/gpu_burst/run_moses.sh
#
# Run M starts from the shipped ar-moses weights (its optimizer state was never shipped: AdamW starts
# afresh, hence the warm-up) or, with RESUME_M=1, resumes runs/gpu-burst/M exactly (unpacked there by
# collect). Every EVAL_MINUTES it samples EVAL_N molecules with the valence masks and EVAL_N without and
# keeps them as action sequences; collect scores them here with RDKit (validity, uniqueness, novelty, FCD
# against MOSES test). Back under $OUT: the whole run folder as 15 MiB tar parts (about 58 MiB: fp32 weights,
# EMA and AdamW without AMSGrad, whose running maximum would make it 72 MiB, over the 64 MiB) and the log.
set -uo pipefail
MINUTES=${MINUTES:-3}
EVAL_MINUTES=${EVAL_MINUTES:-1.5}
EVAL_N=${EVAL_N:-10000}
BATCH=${BATCH:-1024}
LR=${LR:-7e-4}
WARMUP=${WARMUP:-300}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-burst-out}
PY=${PY:-python3}
RESUME_M=${RESUME_M:-0}
DATA=${DATA:-/tmp/moses-ar}
PACK=${PACK:-.devcarry/moses_ar.npz}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" runs/gpu-burst
$PY -m benchmarks.gpu_burst.moses_travel unpack "$PACK" "$DATA" || exit 1
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/machine.txt"

COMMON=(--model ar --dataset moses --encoded-data "$DATA" --device "$DEVICE" --max-minutes "$MINUTES"
        --eval-minutes "$EVAL_MINUTES" --eval-samples "$EVAL_N" --checkpoint-every 2000 --no-progress)
if [ "$RESUME_M" = 1 ] && [ -d runs/gpu-burst/M ]; then
  $PY -m molgen.train "${COMMON[@]}" --resume runs/gpu-burst/M > "$OUT/M.log" 2>&1
else
  rm -rf runs/gpu-burst/M
  $PY -m molgen.train "${COMMON[@]}" --init-from ar-moses --out runs/gpu-burst/M --batch-size "$BATCH" --lr "$LR" \
      --warmup-steps "$WARMUP" --no-amsgrad > "$OUT/M.log" 2>&1
fi
echo "== M: $(tail -n 1 "$OUT/M.log")"
[ -d runs/gpu-burst/M ] && tar -C runs/gpu-burst -cf - M | split -b 15M -d - "$OUT/M.tar."
tar -C "$OUT" -czf "$OUT/logs-moses.tgz" M.log $( [ -f "$OUT/machine.txt" ] && echo machine.txt )
rm -f "$OUT/M.log" "$OUT/machine.txt"
n=$(ls "$OUT" | wc -l); total=$(du -cb "$OUT"/* | tail -n 1 | cut -f1)
echo "returning $n files, $((total / 1048576)) MiB"
[ "$n" -le 8 ] && [ "$total" -lt $((64 * 1048576)) ] || echo "WARNING: over the return limits (8 files, 64 MiB)"
ls -la "$OUT"
