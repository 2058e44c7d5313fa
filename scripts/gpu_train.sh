#!/usr/bin/env bash
# One lent-GPU slice: continue training the shipped model with `mst-geo train` on the compact pack,
# bf16, checkpoints every 2 minutes into $OUT, stopping by itself after $MINUTES (export included).
#
# Prepare on the CPU (both folders are git-ignored; together with the code they fit 64 MiB):
#   python scripts/make_train_pack.py --source ../shared/data/iseg --out packs/iseg320
#   pip download -d packs/wheels "typer==0.16.0" click rich shellingham markdown-it-py mdurl pygments typing-extensions
#   (typer 0.16 installs without pydantic, which newer typer pulls in with a compiled core)
# Dry-run here:  MINUTES=1 DEVICES=cpu bash scripts/gpu_train.sh
# On the device (run tool, carry packs/iseg320 and packs/wheels):  bash scripts/gpu_train.sh
# Every device call starts with an empty $OUT: continue a slice with INIT=<its model.safetensors, carried>.
# Bring back $OUT/run/model.safetensors, bench it here on GrabCut/Berkeley, ship it only if better:
#   mst-geo bench noc --model $OUT_HERE/model.safetensors,default,grabcut --datasets GrabCut,Berkeley
#   python scripts/ship_model.py $OUT_HERE/model.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-8}
OUT=${OUT:-runs/gpu}
INIT=${INIT:-default}              # the packaged weights; INIT=none trains from scratch
RECIPE=${RECIPE:-configs/train/mst_tiny_shipped.yaml}
DEVICES=${DEVICES:-gpu}

# The GPU box has torch, timm and lightning but maybe not the CLI's pure-Python dependencies.
python -c "import typer, rich" 2>/dev/null || pip install -q --no-index --find-links packs/wheels typer rich
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

args=(--config "$RECIPE" --data-root packs/iseg320 --out "$OUT/run"
      --set "trainer.max_minutes=$MINUTES" --set trainer.checkpoint_every_minutes=2)
if [ "$DEVICES" = gpu ]; then
  args+=(--accelerator gpu --devices 1 --workers "$(( $(nproc) - 2 ))")
else
  args+=(--accelerator cpu --devices 1 --workers 1 --max-steps 3)
fi
[ "$INIT" = none ] || args+=(--init "$INIT")
[ -d "$OUT/run/checkpoints" ] && args+=(--resume auto)
python -m mst_geo train "${args[@]}"
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null || true
