#!/usr/bin/env bash
# One lent-GPU slice (one device call, < 10 min): continue the shipped model with `mst-geo train`
# on the compact pack in two stages, bf16:
#   1. $STAGE1_RECIPE (configs/train/shipped_gpu.yaml, lr 3e-4; shipped_gpu_deep.yaml first deepens
#      the network to 12 blocks) from $INIT for $STAGE1_MINUTES
#   2. configs/train/shipped_gpu_anneal.yaml  from stage 1's export at lr 3e-5 for $STAGE2_MINUTES
# With MAE_MINUTES > 0 a new network is started instead: stage 0 pretrains an encoder
# (configs/train/mae_gpu.yaml, masked autoencoding) for MAE_MINUTES and stage 1 starts from it
# (STAGE1_RECIPE=configs/train/mae_click_gpu.yaml: lr 6e-4, for a network whose head starts random).
# Stages, not an lr drop in steps: how many steps a slice reaches is not known beforehand.
# Each stage's model.safetensors is copied to $RESULTS as soon as it ends, with its log, metrics.csv
# and profile in <stage>_logs.tgz (a stage cut short leaves its plain .log).
#
# Prepare on the CPU (git-ignored; zipped, it fits the device's 64 MiB with the code: the folder's
# 11 700 small files count as more):
#   python scripts/make_train_pack.py --source ../shared/data/iseg --out packs/iseg320
#   (cd packs && python -m zipfile -c iseg320.zip iseg320/)
# Dry-run here:  DEVICES=cpu bash scripts/gpu_train.sh
# On the device (run tool, carry packs/iseg320.zip):  RESULTS=$OUT bash scripts/gpu_train.sh
# Measured on an H200: 320 samples/s at batch 64 and 350 at batch 256 (2026-11-27), 346 at batch
# 64 (2026-11-28). Stage 1 runs with Lightning's simple profiler (stage1_profile.txt in $RESULTS/stage1_logs.tgz):
# in the second slice (2026-11-28, from the shipped weights) placing the correction clicks took 37 % of a step, the no-grad passes 24 %,
# backward 13 %, waiting for batches 0.3 % (docs/training.md, "A lent GPU slice").
# On the 2-core dev machine one loader makes 166 samples/s at 288 px and one click takes 1.1 ms.
# The device image has typer and rich (the CLI's pure-Python needs); elsewhere pip install them.
# Then here: python scripts/heldout_noc.py <RESULTS>/stage2.safetensors --count 200 --input-size N
# for a few N, bench it on GrabCut/Berkeley
# (README "Results") and ship it only if better: python scripts/ship_model.py <file> --inference-size N
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-runs/gpu_results}
INIT=${INIT:-default}              # the packaged weights, or a stage-2 export carried from a slice
STAGE1_RECIPE=${STAGE1_RECIPE:-configs/train/shipped_gpu.yaml}
STAGE1_MINUTES=${STAGE1_MINUTES:-6}
STAGE2_MINUTES=${STAGE2_MINUTES:-1.5}
MAE_MINUTES=${MAE_MINUTES:-0}      # > 0: stage 0 pretrains a new encoder and replaces INIT
DEVICES=${DEVICES:-gpu}
PYTHON=$(command -v python3 || command -v python)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$RESULTS"
if [ -f packs/iseg320.zip ] && [ ! packs/iseg320/val.txt -nt packs/iseg320.zip ]; then
  rm -rf packs/iseg320 packs/iseg320.part  # never train on a half-unpacked or older pack
  "$PYTHON" -m zipfile -e packs/iseg320.zip packs/iseg320.part
  mv packs/iseg320.part/iseg320 packs/iseg320 && rmdir packs/iseg320.part && touch packs/iseg320/val.txt
fi

if [ "$DEVICES" = gpu ]; then
  device_args=(--accelerator gpu --devices 1 --workers "$(( $(nproc) - 3 ))")
  runs=runs/gpu
else  # a 3-step rehearsal of both stages, in folders of its own
  device_args=(--accelerator cpu --devices 1 --workers 1 --max-steps 3 --precision 32-true)
  runs=runs/gpu_dryrun
fi

stage() {  # name, recipe, init ("" for the recipe's own), minutes, profile (true/false), export file
  local out=${runs}_$1
  rm -rf "$out"
  "$PYTHON" -m mst_geo train --config "$2" ${3:+--init "$3"} --out "$out" --data-root packs/iseg320 \
    --set "trainer.max_minutes=$4" --set "trainer.profile=$5" "${device_args[@]}" 2>&1 | tee "$RESULTS/$1.log"
  cp "$out/$6" "$RESULTS/$1.safetensors"
  cp "$out"/logs/version_0/metrics.csv "$RESULTS/$1_metrics.csv" 2>/dev/null || true
  cp "$out/fit-profile.txt" "$RESULTS/$1_profile.txt" 2>/dev/null || true
  # the device brings back 8 files at most: a finished stage's log, metrics and profile as one archive
  (cd "$RESULTS" && shopt -s nullglob && files=("$1.log" "$1"_*.csv "$1"_*.txt) \
    && tar czf "$1_logs.tgz" "${files[@]}" && rm -f "${files[@]}") || echo "could not archive $1's logs" >&2
}
if [ "$MAE_MINUTES" != 0 ]; then
  stage stage0 configs/train/mae_gpu.yaml "" "$MAE_MINUTES" false encoder.safetensors
  INIT=${runs}_stage0/encoder.safetensors
fi
stage stage1 "$STAGE1_RECIPE" "$INIT" "$STAGE1_MINUTES" true model.safetensors
stage stage2 configs/train/shipped_gpu_anneal.yaml "${runs}_stage1/model.safetensors" "$STAGE2_MINUTES" false model.safetensors
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null || true
