#!/usr/bin/env bash
# The MOSES part of a GPU burst: ar-moses (run M) and vae-moses (run V) trained side by side on the GPU machine,
# which has no RDKit, from packed training sets made here:
#   python -m benchmarks.gpu_burst.moses_travel pack .devcarry/moses_ar.npz                  # all of MOSES train, 6.6 MiB
#   python -m benchmarks.gpu_burst.moses_vae_travel pack .devcarry/moses_vae.npz --offset 0 --limit 450000  # 3.1 MiB
# (the VAE's featurised graphs of the whole split would be 10.3 MiB, more than the 64 MiB a call may send leaves
# beside the tree and the AR pack, so a rotating chunk of rows travels: the next burst packs --offset 450000).
# A second device call, made at once after run.sh's (the machine stays warm for 30 s): the calls cannot share
# one, since each may send 64 MiB (the tree and QM9, or the tree and MOSES) and bring back 8 files.
# Carry [".devcarry/moses_ar.npz", ".devcarry/moses_vae.npz"] (check with python -m benchmarks.gpu_burst.travel_size
# --carry .devcarry/moses_ar.npz --carry .devcarry/moses_vae.npz) and run `OUT=$OUT bash benchmarks/gpu_burst/run_moses.sh`.
# Tested on a CPU with a tiny budget and packs:
#   python -m benchmarks.gpu_burst.moses_travel pack /tmp/moses2k.npz --limit 2000
#   python -m benchmarks.gpu_burst.moses_vae_travel pack /tmp/moses_vae2k.npz --limit 2000
#   PACK=/tmp/moses2k.npz VAE_PACK=/tmp/moses_vae2k.npz MINUTES=0.2 EVAL_MINUTES=0.1 EVAL_N=20 BATCH=16 VBATCH=16 \
#     DEVICE=cpu bash benchmarks/gpu_burst/run_moses.sh
#
# Run M starts from the shipped ar-moses weights and run V from the shipped vae-moses weights (their optimizer
# states were never shipped: AdamW starts afresh, hence the warm-up) or, with RESUME_M=1 / RESUME_V=1, resume
# runs/gpu-burst/M or V exactly (left there by the previous call of this session, or unpacked there by collect).
# MODELS="ar" or "vae" trains one of them alone. Every EVAL_MINUTES each samples EVAL_N molecules with the
# valence masks and EVAL_N without and keeps them raw (M: action sequences; V: decoded graphs, and greedy
# reconstructions of 2,000 held-out test molecules); collect scores them here with RDKit (validity, uniqueness,
# novelty, FCD against MOSES test, V's reconstruction). V's held-out negative ELBO is computed there.
#
# What comes back: each run folder whole (exact resume) as 15 MiB tar parts, then the logs. M is about 58 MiB
# (fp32 weights = the EMA 14.3 MiB, and the train state: the model 14.3, AdamW's two moments 28.6; without AMSGrad,
# whose running maximum would make it 72 MiB), V about 45 MiB (11.1 MiB each); the eval sample files are a few
# hundred KiB. Together they are over the 64 MiB (8 files) a call may bring back, and nothing in either can go
# without losing the exact resume, so runs are added to $OUT in the order M, V while they fit; a run that does
# not fit stays in runs/gpu-burst/ on the machine, which keeps ignored files while it is warm (30 s): bring it
# back at once with a second call, `RETURN=V OUT=$OUT bash benchmarks/gpu_burst/run_moses.sh` (seconds, no carry).
set -uo pipefail
MINUTES=${MINUTES:-3}
EVAL_MINUTES=${EVAL_MINUTES:-1.5}
EVAL_N=${EVAL_N:-10000}
BATCH=${BATCH:-1024}
LR=${LR:-7e-4}
VBATCH=${VBATCH:-512}
VLR=${VLR:-5e-4}
WARMUP=${WARMUP:-300}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-burst-out}
PY=${PY:-python3}
MODELS=${MODELS:-ar vae}
RESUME_M=${RESUME_M:-0}
RESUME_V=${RESUME_V:-0}
RETURN=${RETURN:-}
DATA=${DATA:-/tmp/moses-ar}
VAE_DATA=${VAE_DATA:-/tmp/moses-vae}
PACK=${PACK:-.devcarry/moses_ar.npz}
VAE_PACK=${VAE_PACK:-.devcarry/moses_vae.npz}
LIMIT=$((64 * 1048576))
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" runs/gpu-burst

# the run folders named, as whole-folder tar parts, while they fit the return limits (8 files, 64 MiB)
give_back() {
  local r parts used
  for r in "$@"; do
    [ -d "runs/gpu-burst/$r" ] || continue
    rm -f /tmp/"$r".tar.*
    tar -C runs/gpu-burst -cf - "$r" | split -b 15M -d - "/tmp/$r.tar."
    parts=$(ls /tmp/"$r".tar.* | wc -l)
    used=$(du -cb "$OUT"/* 2>/dev/null | tail -n 1 | cut -f1)
    if [ $(( $(ls "$OUT" | wc -l) + parts + 1 )) -le 8 ] && \
       [ $(( ${used:-0} + $(du -cb /tmp/"$r".tar.* | tail -n 1 | cut -f1) + 1048576 )) -lt "$LIMIT" ]; then
      mv /tmp/"$r".tar.* "$OUT"/
    else
      rm -f /tmp/"$r".tar.*
      echo "== $r stays in runs/gpu-burst/$r on this machine (over the return limits with the rest): bring it back" \
           "at once with RETURN=$r OUT=\$OUT bash benchmarks/gpu_burst/run_moses.sh"
    fi
  done
}
report() {
  local n total
  n=$(ls "$OUT" | wc -l); total=$(du -cb "$OUT"/* | tail -n 1 | cut -f1)
  echo "returning $n files, $((total / 1048576)) MiB"
  [ "$n" -le 8 ] && [ "$total" -lt "$LIMIT" ] || echo "WARNING: over the return limits (8 files, 64 MiB)"
  ls -la "$OUT"
}
if [ -n "$RETURN" ]; then  # the second call: only bring back what the first one left
  give_back $RETURN
  report
  exit 0
fi

[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/machine.txt"
pin() { if command -v taskset >/dev/null && [ "$(nproc)" -ge 16 ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
COMMON=(--dataset moses --device "$DEVICE" --max-minutes "$MINUTES" --eval-minutes "$EVAL_MINUTES"
        --eval-samples "$EVAL_N" --checkpoint-every 2000 --no-progress)
logs=()
# launch RUN MODEL DATA CHECKPOINT CORES RESUME BATCH LR: train run RUN (M or V) in the background, resuming
# runs/gpu-burst/RUN exactly when RESUME is 1 and it is there, otherwise starting from the shipped CHECKPOINT
launch() {
  local run=$1 model=$2 data=$3 init=$4 cores=$5 resume=$6 batch=$7 lr=$8
  if [ "$resume" = 1 ] && [ -d "runs/gpu-burst/$run" ]; then
    pin "$cores" $PY -m molgen.train --model "$model" --encoded-data "$data" "${COMMON[@]}" \
        --resume "runs/gpu-burst/$run" > "$OUT/$run.log" 2>&1 &
  else
    rm -rf "runs/gpu-burst/$run"
    pin "$cores" $PY -m molgen.train --model "$model" --encoded-data "$data" "${COMMON[@]}" --init-from "$init" \
        --out "runs/gpu-burst/$run" --batch-size "$batch" --lr "$lr" --warmup-steps "$WARMUP" --no-amsgrad \
        > "$OUT/$run.log" 2>&1 &
  fi
  logs+=("$run.log")
}
if [[ " $MODELS " == *" ar "* ]]; then
  $PY -m benchmarks.gpu_burst.moses_travel unpack "$PACK" "$DATA" || exit 1
  launch M ar "$DATA" ar-moses 0-7 "$RESUME_M" "$BATCH" "$LR"
fi
if [[ " $MODELS " == *" vae "* ]]; then
  $PY -m benchmarks.gpu_burst.moses_vae_travel unpack "$VAE_PACK" "$VAE_DATA" || exit 1
  launch V vae "$VAE_DATA" vae-moses 8-15 "$RESUME_V" "$VBATCH" "$VLR"
fi
wait
for log in "${logs[@]}"; do echo "== ${log%.log}: $(tail -n 1 "$OUT/$log")"; done
[ -f "$OUT/machine.txt" ] && logs+=(machine.txt)
tar -C "$OUT" -czf /tmp/logs-moses.tgz "${logs[@]}" && (cd "$OUT" && rm -f "${logs[@]}")
give_back M V
mv /tmp/logs-moses.tgz "$OUT"/
report
