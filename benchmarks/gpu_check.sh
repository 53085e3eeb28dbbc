#!/usr/bin/env bash
# The GPU check of issues 19 and 26: `flowopd bench memory` (the memory plan against torch.cuda.max_memory_allocated,
# every stage, 512 px at micro-batch 1 and 4 and 1024 px at 1, in memory-*/bench-memory.json), then
# `flowopd bench gpu` on the real SD3.5 Medium transformer config (random weights,
# nothing downloaded), bf16, on one CUDA GPU, in three runs (each capped, about 4-5 min in all on an H200):
#
#   512/               512 px, batch 4 (micro-batch 2), full copies in float32 as the released code keeps them
#   1024/              1024 px, batch 2 (micro-batch 1: about 30 GB of activations per image with CFG), same
#   512-bf16-copies/   512 px with the copies in bf16 too: the layouts alone, without the dtype difference
#
# each with bench-gpu.json and bench-gpu.md, plus gpu-check.log (versions, nvidia-smi, every run's output).
#
# Usage, from anywhere:  bash benchmarks/gpu_check.sh [OUT]      (OUT defaults to $OUT, else ./gpu-check)
#
# Dependencies, in this order:
#   1. a .whl/ folder in the repository (wheels carried to a machine without a package index, e.g.
#      `python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1` for a machine whose
#      Python already has a CUDA torch, peft, accelerate and transformers): installed into /tmp/flowopd-site;
#   2. else, if the Python lacks them: the CUDA torch and the requirements from the package index (PyPI's
#      torch==2.13.0 on x86_64 Linux is the CUDA build), without the app, browser and lint packages.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT_DIR=$(mkdir -p "${1:-${OUT:-gpu-check}}" && cd "${1:-${OUT:-gpu-check}}" && pwd)
PY=${PYTHON:-python3}
LOG=$OUT_DIR/gpu-check.log
cd "$ROOT"
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1
exec > >(tee -a "$LOG") 2>&1
echo "== gpu_check $(date -u +%FT%TZ) in $ROOT, results in $OUT_DIR"

if compgen -G ".whl/*.whl" > /dev/null; then
  echo "== installing the carried wheels: $(ls .whl)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/flowopd-site .whl/*.whl
  export PYTHONPATH=/tmp/flowopd-site${PYTHONPATH:+:$PYTHONPATH}
elif ! "$PY" -c "import torch, diffusers, peft, accelerate, transformers" 2> /dev/null; then
  echo "== installing the CUDA torch and the requirements"
  "$PY" -m pip install -q torch==2.13.0
  grep -v -E '^(torch|gradio|playwright|ruff|sqlite-utils|pytest)==' requirements.txt > /tmp/flowopd-gpu-req.txt
  "$PY" -m pip install -q -r /tmp/flowopd-gpu-req.txt
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

"$PY" - << 'EOF'
import sys
import torch
try:
    import accelerate, diffusers, peft
except ImportError as err:
    sys.exit(f"gpu_check: {err.name} is missing: carry its wheel in .whl/ (see the top of this script)")
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (is this the CUDA build of torch?)")
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers "
      f"{diffusers.__version__}, peft {peft.__version__}, accelerate {accelerate.__version__}; "
      f"{torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true

bench() {  # NAME CAP_SECONDS FLAGS...: one capped run; a failure or timeout is logged and the next run goes on
  local name=$1 cap=$2
  shift 2
  echo "== $name (at most ${cap} s): flowopd bench gpu $*"
  local start=$SECONDS
  if timeout "$cap" "$PY" -m flowopd bench gpu --device cuda --shape sd35-medium --dtype bfloat16 \
      --out "$OUT_DIR/$name" "$@"; then
    echo "== $name done in $((SECONDS - start)) s"
  else
    echo "== $name FAILED or timed out (exit $?) after $((SECONDS - start)) s"
  fi
}

memory() {  # NAME CAP_SECONDS FLAGS...: the memory plan against max_memory_allocated, every stage (issue 26)
  local name=$1 cap=$2
  shift 2
  echo "== $name (at most ${cap} s): flowopd bench memory $*"
  local start=$SECONDS
  if timeout "$cap" "$PY" -m flowopd bench memory --device cuda --model sd3.5-medium --out "$OUT_DIR/$name" "$@"; then
    echo "== $name done in $((SECONDS - start)) s"
  else
    echo "== $name FAILED or timed out (exit $?) after $((SECONDS - start)) s"
  fi
}

memory memory-512-m1 150 --resolution 512 --micro-batch 1
memory memory-512-m4 150 --resolution 512 --micro-batch 4
memory memory-1024-m1 150 --resolution 1024 --micro-batch 1
bench 512 200 --resolution 512 --batch 4 --micro-batch 2 --copy-dtype float32
bench 1024 200 --resolution 1024 --batch 2 --micro-batch 1 --copy-dtype float32
bench 512-bf16-copies 150 --resolution 512 --batch 4 --micro-batch 2 --copy-dtype bfloat16
echo "== gpu_check finished in ${SECONDS} s"
