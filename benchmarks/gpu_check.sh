#!/usr/bin/env bash
# CUDA parity (fp32, bf16) and throughput against sentence-transformers on one GPU, well under
# 5 minutes (issue 14, item 5). Never needed by CI; no GPU has run it yet. Two steps:
#   here, with the venv (CPU):   bash benchmarks/gpu_check.sh prepare
#       -> .gpu/ (git-ignored, ~46 MiB): the default model with float16 storage + 4,000 texts
#   on the GPU machine:          bash benchmarks/gpu_check.sh [OUT_DIR]
#       (device tool: carry [".gpu"]; it needs python3 with CUDA torch, sentence-transformers,
#       tokenizers, safetensors, numpy: seqenc itself runs from src/, its C kernels unused)
# Results: OUT_DIR (default $OUT, else .gpu/out)/gpu_check.json and .log; record them in
# benchmarks/RESULTS.md with the GPU's name.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
    exec .venv/bin/python benchmarks/gpu_check.py prepare .gpu --texts 4000
fi
out=${1:-${OUT:-.gpu/out}}
mkdir -p "$out"
[ -f .gpu/texts.txt ] || { echo "run 'bash benchmarks/gpu_check.sh prepare' first" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt" || true
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 270 python3 benchmarks/gpu_check.py run .gpu --out "$out/gpu_check.json" 2>&1 \
    | tee "$out/gpu_check.log"
