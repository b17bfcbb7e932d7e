#!/usr/bin/env bash
# Device check (issues 7 and 18): `bench step` and `bench pipeline` on one GPU at the paper's sizes (224-px
# crops, batch 120, width-64 U-Net encoder, bf16 autocast), with crops/s, peak GPU memory, the achieved
# fraction of the GPU's measured bf16 matmul peak for each tuning (channels_last, cudnn benchmark, fused SGD,
# torch.compile, each on top of the last), whether issue 18's goals are met (compute >= 40 % of the peak,
# pipeline >= 0.85 of compute), and projections of the paper's full runs.
#
#   bash scripts/gpu_check.sh                      # on the GPU machine, from the repository root
#   DEVICE=cpu WIDTH=2 CROP=32 BATCH=4 STEPS=1 ROUNDS=1 WORKERS=0 PEAK=256 bash scripts/gpu_check.sh   # CPU smoke
#
# Writes gpu_check.json (or $OUT/gpu_check.json when OUT is set) beside the printed tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
RESULT=${OUT:-.}/gpu_check.json
if [[ "${DEVICE:-cuda}" == cuda* ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'threads', torch.get_num_threads())"
if [[ "${DEVICE:-cuda}" == cuda* ]] && "$PYTHON" -c "import pytest" 2>/dev/null; then
    # the tests that only a GPU runs: fp16 loss scaling in the trainers
    "$PYTHON" -m pytest -q tests/test_engines.py -k "float16" -p no:cacheprovider || echo "GPU-only tests FAILED"
fi
exec "$PYTHON" -m camcontrast_monai.apps.cli bench gpu \
    --device "${DEVICE:-cuda}" --width "${WIDTH:-64}" --crop_size "${CROP:-224}" --batch_size "${BATCH:-120}" \
    --steps "${STEPS:-5}" --warmup "${WARMUP:-2}" --rounds "${ROUNDS:-3}" --num_workers "${WORKERS:-8}" \
    --peak_size "${PEAK:-8192}" --variants "${VARIANTS:-fp32,bf16,bf16+channels_last,bf16+channels_last+cudnn_benchmark,bf16+channels_last+cudnn_benchmark+fused,bf16+channels_last+cudnn_benchmark+fused+compile}" \
    --precision "${PRECISION:-bf16}" --json_out "$RESULT"
