#!/usr/bin/env bash
# Issue 15: the fundus demo at the paper's encoder width and crop size on one GPU (`camcontrast demo --preset gpu`:
# 1000 pretraining images at 448 px, width 64, 224-px crops, stage 2 for 30 epochs at batch 120, bf16 autocast and
# channels-last), writing the same report as the CPU demo. Aimed at about 8 minutes of an H200.
#
#   bash scripts/gpu_demo.sh                          # on the GPU machine, from the repository root
#   PRESET=quick WORKERS=0 bash scripts/gpu_demo.sh   # a CPU smoke run of the script at the quick demo's sizes
#
# Writes $OUT/gpu_demo/report/README.md (OUT defaults to the current folder) and prints the wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT:-.}/gpu_demo
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total --format=csv
fi
start=$(date +%s)
"$PYTHON" -m camcontrast_monai.apps.cli demo --preset "${PRESET:-gpu}" --out "$OUT_DIR" --num_workers "${WORKERS:-8}"
echo "gpu_demo: preset ${PRESET:-gpu}, $(( $(date +%s) - start )) s wall time, report in $OUT_DIR/report/README.md"
