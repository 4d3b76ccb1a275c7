#!/usr/bin/env bash
# One GPU burst for EDM (run on the device machine from the repository root; tested on a CPU with a
# tiny budget: `MINUTES=0.3 EVAL_MINUTES=0.1 EVAL_N=8 BATCH=8 PBATCH=16 PTEST=200 DEVICE=cpu bash benchmarks/gpu_burst/run.sh`;
# PTEST limits the predictor's final test to that many second-half molecules, all 50,000 by default).
#
# Four runs share the GPU for MINUTES each, pinned to separate CPU cores; the generators evaluate EVAL_N
# molecules every EVAL_MINUTES (stability on the GPU machine, which has no RDKit; the samples are kept
# for validity here):
#   A  the shipped edm-qm9 resumed exactly with EDM's objective, size-bucketed batches
#   B  the shipped edm-qm9 resumed with min-SNR weighting (same network and start, another loss weighting:
#      A against B is a learning curve at equal GPU minutes)
#   D  a conditional EDM (128x6) on the six QM9 properties, trained on EDM's second half of the training split
#   P  the property-predicting EGNN on the first half (it scores D: benchmarks.studies.edm_conditional)
# A run folder of a second burst resumes with the same command (D and P resume from runs/gpu-burst/D|P when
# RESUME_DP=1 and those folders were unpacked there by collect).
# Everything comes back under $OUT as at most 8 files of < 16 MiB, 64 MiB in all: A, D and P as tars of the
# whole run folder split into 15 MiB parts (2 files each, 18-22 MB), B without its train state (1 file), the
# logs (1 file): about 62 MB.
# `python -m benchmarks.gpu_burst.collect FILES_AT` unpacks them here into runs/gpu-burst/<run>/ and scores
# the saved samples with RDKit.
#
# The MOSES part (ar-moses) is a second call made at once after this one: benchmarks/gpu_burst/run_moses.sh.
# Needs .devcarry/qm9_travel.npz (python -m benchmarks.gpu_burst.qm9_travel pack .devcarry/qm9_travel.npz)
# carried with the call (carry: [".devcarry/qm9_travel.npz"]). Before the call, check that it all fits the 64 MiB a call
# may send: python -m benchmarks.gpu_burst.travel_size --carry .devcarry/qm9_travel.npz (tests/test_gpu_burst.py keeps
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
RESUME_DP=${RESUME_DP:-0}
export PYTHONUNBUFFERED=1 MOLGEN_CACHE=${MOLGEN_CACHE:-/tmp/molgen-cache}
mkdir -p "$OUT" runs/gpu-burst
$PY -m benchmarks.gpu_burst.qm9_travel unpack .devcarry/qm9_travel.npz || exit 1
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/machine.txt"

rm -rf runs/gpu-burst/A runs/gpu-burst/B
[ "$RESUME_DP" = 1 ] || rm -rf runs/gpu-burst/D runs/gpu-burst/P
cp -r molgen/pretrained/edm-qm9 runs/gpu-burst/A
cp -r molgen/pretrained/edm-qm9 runs/gpu-burst/B
printf '{"model": {"default_sampling_steps": 100}}\n' > runs/gpu-burst/A.json
printf '{"model": {"loss_weighting": "min_snr", "default_sampling_steps": 100}}\n' > runs/gpu-burst/B.json
COMMON=(--device "$DEVICE" --max-minutes "$MINUTES" --eval-minutes "$EVAL_MINUTES" --eval-samples "$EVAL_N"
        --buckets 12,16,20,24,29 --batch-size "$BATCH" --lr "$LR" --warmup-steps 500 --checkpoint-every 2000 --no-progress)
pin() { if command -v taskset >/dev/null && [ "$(nproc)" -ge 16 ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
pin 0-3 $PY -m molgen.train --model edm --resume runs/gpu-burst/A --config runs/gpu-burst/A.json "${COMMON[@]}" > "$OUT/A.log" 2>&1 &
pin 4-7 $PY -m molgen.train --model edm --resume runs/gpu-burst/B --config runs/gpu-burst/B.json "${COMMON[@]}" > "$OUT/B.log" 2>&1 &
pin 8-11 $PY -m molgen.train --model edm --conditions alpha,gap,homo,lumo,mu,Cv --out runs/gpu-burst/D "${COMMON[@]}" > "$OUT/D.log" 2>&1 &
pin 12-15 $PY -m molgen.cli.train_predictor --out runs/gpu-burst/P --device "$DEVICE" --max-minutes "$MINUTES" \
    --batch-size "${PBATCH:-256}" --lr 1e-3 ${PTEST:+--test-molecules "$PTEST"} --no-progress > "$OUT/P.log" 2>&1 &
wait
for r in A B D P; do echo "== $r: $(tail -n 1 "$OUT/$r.log")"; done

# pack: every file < 16 MiB, at most 8 files, 64 MiB in all
for r in A D P; do  # full run folders: the next burst resumes them exactly
  [ -d "runs/gpu-burst/$r" ] && tar -C runs/gpu-burst -cf - "$r" | split -b 15M -d - "$OUT/$r.tar."
done
# B is the comparison: its weights, card (learning curve), logs and samples; its train state stays behind
[ -d runs/gpu-burst/B ] && tar -C runs/gpu-burst -cf "$OUT/B-weights.tar" --exclude 'train_state*' --exclude checkpoint.json B
tar -C "$OUT" -czf "$OUT/logs.tgz" A.log B.log D.log P.log $( [ -f "$OUT/machine.txt" ] && echo machine.txt )
rm -f "$OUT"/A.log "$OUT"/B.log "$OUT"/D.log "$OUT"/P.log "$OUT/machine.txt"
n=$(ls "$OUT" | wc -l); total=$(du -cb "$OUT"/* | tail -n 1 | cut -f1)
echo "returning $n files, $((total / 1048576)) MiB"
[ "$n" -le 8 ] && [ "$total" -lt $((64 * 1048576)) ] || echo "WARNING: over the return limits (8 files, 64 MiB)"
ls -la "$OUT"
