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
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-full}          # full | tiny
SEEDS=${SEEDS:-"1"}
TAG=${TAG:-$(python3 -c 'import torch; print(torch.cuda.get_device_name(0).split()[1] if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo cpu)}
ARCHIVE=${ARCHIVE:-.data/cifar10-jpeg.tar.xz}
RESULTS=${RESULTS:-benchmarks/results}
RECIPES=${RECIPES:-"s10_resnet_custom s8_bn s8_gn s8_ln s6_dilated s9_dilated"}
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
  N_AUG=2000; SUBSET=(--set data.train_subset=512 --set data.test_subset=200 --set epochs=1); EPOCH_ARGS=(--subset 512)
else
  N_AUG=50000; SUBSET=(); EPOCH_ARGS=()
fi

echo "== data: decode once (cache in $CIFARCTL_DATA_DIR)"
python3 -m cifarctl data "$ARCHIVE" --json > "$RESULTS/data-$TAG.json" || exit 1

echo "== augmentation throughput"
python3 benchmarks/bench_augment.py --device "$DEVICE" --n "$N_AUG" --steps s10 --json "$RESULTS/augment-s10-$TAG.json"
python3 benchmarks/bench_augment.py --device "$DEVICE" --n "$N_AUG" --steps s9 --json "$RESULTS/augment-s9-$TAG.json"

echo "== epoch time: cifarctl engine vs the seed-style loop"
python3 benchmarks/bench_epoch.py --device "$DEVICE" --data "$ARCHIVE" "${EPOCH_ARGS[@]}" --json "$RESULTS/epoch-$TAG.json"

echo "== reproduction of every recipe"
python3 benchmarks/reproduce.py --data "$ARCHIVE" --device "$DEVICE" --seeds $SEEDS --recipes $RECIPES \
  --tag "$TAG" --out "$RESULTS" "${SUBSET[@]}"
