#!/usr/bin/env bash
# Every GPU measurement of cifarctl in one call (at most 10 minutes) on a bare GPU
# machine that has torch but no network.
#
# Before the call, on a machine with the repo:
#   mkdir -p .data && cp ../shared/data/cifar10-jpeg.tar.xz .data/     # git-ignored
#   bash benchmarks/fetch_wheels.sh                                     # deps missing there -> .whl/
# then run `bash benchmarks/gpu.sh` there with .data and .whl carried.
#
# A CPU dry run with a tiny setting checks the script itself:
#   DEVICE=cpu SCALE=tiny bash benchmarks/gpu.sh
# PARTS picks sections (default all): gpupath data augment epoch profile reproduce speedrun, e.g.
#   PARTS="reproduce speedrun" bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-full}          # full | tiny
SEEDS=${SEEDS:-"1"}
TAG=${TAG:-$(python3 -c 'import torch; print(torch.cuda.get_device_name(0).split()[1] if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo cpu)}
ARCHIVE=${ARCHIVE:-.data/cifar10-jpeg.tar.xz}
RESULTS=${RESULTS:-benchmarks/results}
RECIPES=${RECIPES:-"s10_resnet_custom s8_bn s8_gn s8_ln s6_dilated s9_dilated"}
PARTS=${PARTS:-"gpupath data augment epoch profile reproduce speedrun"}
part() { [[ " $PARTS " == *" $1 "* ]]; }
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
export CIFARCTL_DATA_DIR=${CIFARCTL_DATA_DIR:-/tmp/cifarctl-cache}

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$RESULTS"
[ -f "$ARCHIVE" ] || { echo "error: $ARCHIVE not found: copy ../shared/data/cifar10-jpeg.tar.xz there" >&2; exit 2; }

if [ "$SCALE" = tiny ]; then
  N_AUG=2000; SUBSET=(--set data.train_subset=1024 --set data.test_subset=200 --set epochs=1); EPOCH_ARGS=(--subset 1024)
  PROFILE_STEPS=3
  LR_FIND_ITERS=${LR_FIND_ITERS:-10}
else
  N_AUG=50000; SUBSET=(); EPOCH_ARGS=(); PROFILE_STEPS=20
fi

if part gpupath; then
  # Per recipe: ms per epoch boundary, host reads and CUDA syncs per step, recompiles after
  # epoch 1 with compile: true (benchmarks/bench_epoch_overhead.py), one file per recipe.
  echo "== GPU path: epoch boundaries, syncs per step, recompiles"
  if [ "$SCALE" = tiny ]; then OVERHEAD=(--steps 8 --epochs 4 --batch 16 --repeat 1); else OVERHEAD=(--repeat 2); fi
  for r in $RECIPES speedrun; do
    python3 benchmarks/bench_epoch_overhead.py --device "$DEVICE" --recipe "$r" "${OVERHEAD[@]}" \
      --json "$RESULTS/gpu-path-$r-$TAG.json" --md "$RESULTS/gpu-path-$r-$TAG.md" | tail -n 4
  done
fi

echo "== data: decode once (cache in $CIFARCTL_DATA_DIR)"
python3 -m cifarctl data "$ARCHIVE" --json > "$RESULTS/data-$TAG.json" || exit 1
part data && python3 benchmarks/bench_data.py --data "$ARCHIVE" --reloads 3 --json "$RESULTS/data-load-$TAG.json"

if part augment; then
  echo "== augmentation throughput"
  python3 benchmarks/bench_augment.py --device "$DEVICE" --n "$N_AUG" --steps s10 --json "$RESULTS/augment-s10-$TAG.json"
  python3 benchmarks/bench_augment.py --device "$DEVICE" --n "$N_AUG" --steps s9 --json "$RESULTS/augment-s9-$TAG.json"
fi

part epoch && echo "== epoch time: cifarctl engine vs the seed-style loop" &&
python3 benchmarks/bench_epoch.py --device "$DEVICE" --data "$ARCHIVE" --recipes $RECIPES "${EPOCH_ARGS[@]}" --json "$RESULTS/epoch-$TAG.json"

part profile && echo "== profile: where a step's time goes" &&
python3 benchmarks/profile_engine.py --device "$DEVICE" --data "$ARCHIVE" "${EPOCH_ARGS[@]}" --steps "$PROFILE_STEPS" \
  --json "$RESULTS/profile-$TAG.json" > /dev/null

echo "== speedrun (airbench94 style): 5 seeds, when time allows"
# Runs before the reproduction (short, and the reproduction may not finish in one call:
# it writes its tables after every run). Starts only while less than
# SPEEDRUN_START_BEFORE_S seconds of this script have passed
# (a run: ~4 s of training plus start-up, data load and the per-epoch flip+translate TTA).
# Accuracy: final_test_acc (with TTA) in reproduce-speedrun-$TAG.*; training time without
# the evaluations: speedrun-train-seconds-$TAG.json (sums of metrics.jsonl's train_seconds).
SPEEDRUN_SEEDS=${SPEEDRUN_SEEDS:-"1 2 3 4 5"}
if ! part speedrun; then
  :
elif [ "$SECONDS" -lt "${SPEEDRUN_START_BEFORE_S:-480}" ]; then
  SPEEDRUN_SET=(); [ "$SCALE" = tiny ] && SPEEDRUN_SET=(--set data.batch_size=256)
  SPEEDRUN_RUNS=$(mktemp -d /tmp/cifarctl-speedrun-XXXXXX)
  python3 benchmarks/reproduce.py --data "$ARCHIVE" --device "$DEVICE" --seeds $SPEEDRUN_SEEDS --recipes speedrun \
    --tag "speedrun-$TAG" --out "$RESULTS" --runs-dir "$SPEEDRUN_RUNS" "${SUBSET[@]}" "${SPEEDRUN_SET[@]}"
  python3 - "$SPEEDRUN_RUNS" "$RESULTS/speedrun-train-seconds-$TAG.json" <<'PY'
import json, statistics, sys
from pathlib import Path
runs = {}
for m in sorted(Path(sys.argv[1]).glob("speedrun-seed*/metrics.jsonl")):
    rows = [json.loads(line) for line in m.read_text().splitlines() if line.strip()]
    runs[m.parent.name] = {"epochs": len(rows), "train_seconds": sum(r["train_seconds"] for r in rows),
                           "final_test_acc": rows[-1]["test_acc"] if rows else None}
secs = [r["train_seconds"] for r in runs.values()]
accs = [r["final_test_acc"] for r in runs.values() if r["final_test_acc"] is not None]
out = {"runs": runs, "train_seconds_mean": statistics.fmean(secs) if secs else None,
       "final_test_acc_mean": statistics.fmean(accs) if accs else None}
Path(sys.argv[2]).write_text(json.dumps(out, indent=2))
print(f"speedrun: {len(runs)} runs, mean {out['final_test_acc_mean']}% in {out['train_seconds_mean']} s of training")
PY
else
  echo "skipped: ${SECONDS}s of the 10 minutes already passed (SPEEDRUN_START_BEFORE_S=${SPEEDRUN_START_BEFORE_S:-480})"
fi

part reproduce && echo "== reproduction of every recipe" &&
python3 benchmarks/reproduce.py --data "$ARCHIVE" --device "$DEVICE" --seeds $SEEDS --recipes $RECIPES \
  --tag "$TAG" --out "$RESULTS" "${SUBSET[@]}" ${LR_FIND_ITERS:+--lr-find-iters $LR_FIND_ITERS}
