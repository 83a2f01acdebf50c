#!/usr/bin/env bash
# The GPU measurements of cifarctl in one call of at most 7 minutes on one bare GPU machine
# that has torch but no network. Parts run most important first, each time-boxed, and each
# appends to its own file under $OUT as it goes (a part cut short keeps what it wrote):
#
#   smoke     precision auto's choice, fp16 (GradScaler) and bf16 training, fused optimizers
#             over an overflow step                                  -> $OUT/smoke.md
#   syncs     host reads and CUDA syncs per step (set_sync_debug_mode): as written, fp16,
#             TTA evaluation per chunk -> $OUT/syncs-<recipe>.md; aten ops per step -> $OUT/ops.md
#   boundary  ms per epoch boundary, 10k test images, median of 5 pairs -> $OUT/boundary.md
#   epoch     epoch time vs the seed-style loop, s8_bn s9 s10 (needs the data) -> $OUT/epoch.md
#   speedrun  the speedrun recipe, one seed, aiming at 94 % (needs the data) -> $OUT/speedrun.md
#   ddp       2 processes with SyncBatchNorm (needs 2 GPUs; else one line) -> $OUT/ddp.md
#
# Before the call, in the repo (both folders are git-ignored; name them in `carry`):
#   mkdir -p .data && cp ../shared/data/cifar10-jpeg.tar.xz .data/
#   bash benchmarks/fetch_wheels.sh                 # deps missing there -> .whl/
# then run `bash benchmarks/gpu.sh` there with carry [".data", ".whl"].
#
# A CPU dry run with a tiny setting checks the script itself (tests/test_gpu_path.py):
#   DEVICE=cpu SCALE=tiny OUT=/tmp/out bash benchmarks/gpu.sh
# PARTS picks parts (default all), e.g. PARTS="smoke syncs" bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-full}          # full | tiny
OUT=${OUT:-benchmarks/results/gpu}
ARCHIVE=${ARCHIVE:-.data/cifar10-jpeg.tar.xz}
PARTS=${PARTS:-"smoke syncs boundary epoch speedrun ddp"}
BUDGET_S=${BUDGET_S:-420}     # the whole call; every part's box is cut to what is left
part() { [[ " $PARTS " == *" $1 "* ]]; }
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
export CIFARCTL_DATA_DIR=${CIFARCTL_DATA_DIR:-/tmp/cifarctl-cache}
mkdir -p "$OUT"
LOG="$OUT/gpu-sh.log"
RUNS=$(mktemp -d /tmp/gpu-sh-runs-XXXXXX)  # run folders (checkpoints stay out of $OUT)

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
GPUS=$(python3 -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)

# run PART BOX_S FILE CMD...: CMD under `timeout`, cut to the budget left; its output is
# appended to FILE as it comes; a line in FILE and the log says how it ended.
run() {
  local name=$1 box=$2 file=$3; shift 3
  local left=$((BUDGET_S - SECONDS))
  [ "$box" -gt "$left" ] && box=$left
  if [ "$box" -lt 10 ]; then
    echo "skipped: ${SECONDS}s of the ${BUDGET_S}s budget already used" | tee -a "$file" "$LOG"
    return
  fi
  echo "== $name (at most ${box}s, started at ${SECONDS}s)" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --kill-after=10 "$box" "$@" 2>>"$LOG" | tee -a "$file"
  local rc=${PIPESTATUS[0]}
  local how="done"; [ "$rc" -eq 124 ] && how="cut at its ${box}s box"; [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && how="failed (exit $rc, see gpu-sh.log)"
  echo "<!-- $name: $how in $((SECONDS - t0))s -->" | tee -a "$file" >>"$LOG"
}

if [ "$SCALE" = tiny ]; then
  SMOKE=(--steps 4 --test-images 64); SYNC_RECIPES="s8_bn"; SYNC=(--sync-steps 2 6); OPS=(--recipes s8_bn --batch 16); BOUNDARY=(--steps 8 --epochs 3 --batch 16 --repeat 1 --test-images 200)
  EPOCH=(--subset 256); EPOCH_RECIPES="s8_bn"; SPEED=(--set data.train_subset=1024 --set data.test_subset=200 --set epochs=1 --set data.batch_size=256)
  BOX_SMOKE=900 BOX_SYNCS=900 BOX_BOUNDARY=900 BOX_EPOCH=900 BOX_SPEED=900 BOX_DDP=60 BOX_DATA=900 BOX_OPS=900  # a busy CPU
  BUDGET_S=7200
else
  SMOKE=(--steps 100); SYNC_RECIPES="s8_bn s9_dilated speedrun"; SYNC=(); OPS=(); BOUNDARY=(--repeat 5)
  EPOCH=(); EPOCH_RECIPES="s8_bn s9_dilated s10_resnet_custom"; SPEED=()
  BOX_SMOKE=50 BOX_SYNCS=60 BOX_BOUNDARY=80 BOX_EPOCH=100 BOX_SPEED=120 BOX_DDP=60 BOX_DATA=60 BOX_OPS=30
fi

part smoke && run smoke "$BOX_SMOKE" "$OUT/smoke.md" python3 benchmarks/gpu_smoke.py --device "$DEVICE" "${SMOKE[@]}"

if part syncs; then  # no data needed: synthetic images
  for r in $SYNC_RECIPES; do
    run "syncs $r" "$((BOX_SYNCS / $(wc -w <<<"$SYNC_RECIPES")))" "$OUT/syncs-$r.md" \
      python3 benchmarks/bench_epoch_overhead.py --device "$DEVICE" --recipe "$r" --part syncs "${SYNC[@]}" --json "$OUT/syncs-$r.json"
  done
  run "aten ops per step" "$BOX_OPS" "$OUT/ops.md" python3 benchmarks/bench_ops.py --device "$DEVICE" "${OPS[@]}" --json "$OUT/ops.json"
fi

part boundary && run boundary "$BOX_BOUNDARY" "$OUT/boundary.md" \
  python3 benchmarks/bench_epoch_overhead.py --device "$DEVICE" --recipe s8_bn --part boundary "${BOUNDARY[@]}" --json "$OUT/boundary.json"

if part epoch || part speedrun; then
  if [ -f "$ARCHIVE" ]; then
    run data "$BOX_DATA" "$OUT/data.md" python3 -m cifarctl data "$ARCHIVE"
  else
    for p in epoch speedrun; do part $p && echo "skipped: $ARCHIVE not found: copy ../shared/data/cifar10-jpeg.tar.xz there and carry .data" | tee -a "$OUT/$p.md" "$LOG"; done
    PARTS=${PARTS//epoch/}; PARTS=${PARTS//speedrun/}
  fi
fi

part epoch && run epoch "$BOX_EPOCH" "$OUT/epoch.md" \
  python3 benchmarks/bench_epoch.py --device "$DEVICE" --data "$ARCHIVE" --recipes $EPOCH_RECIPES "${EPOCH[@]}" --json "$OUT/epoch.json"

if part speedrun; then  # one seed: final_test_acc (with TTA) and training seconds in $OUT/speedrun.md
  run speedrun "$BOX_SPEED" "$OUT/speedrun.md" \
    python3 -m cifarctl train speedrun --data "$ARCHIVE" --device "$DEVICE" --runs-dir "$RUNS" --name speedrun-seed1 "${SPEED[@]}"
  cp "$RUNS"/speedrun-seed1/metrics.jsonl "$OUT/speedrun-metrics.jsonl" 2>/dev/null
fi

if part ddp; then
  if [ "$GPUS" -ge 2 ]; then
    run ddp "$BOX_DDP" "$OUT/ddp.md" python3 -m cifarctl train s8_bn --nproc 2 --device cuda --runs-dir "$RUNS" \
      --name ddp-syncbn --set sync_bn=true --set epochs=1 --set data.source=synthetic:12800:1000
  else
    echo "skipped: 2 processes with SyncBatchNorm need 2 GPUs; this machine has $GPUS" | tee -a "$OUT/ddp.md" "$LOG"
  fi
fi
echo "gpu.sh: ${SECONDS}s in all (budget ${BUDGET_S}s)" | tee -a "$LOG"
