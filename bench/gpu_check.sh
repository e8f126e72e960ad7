#!/usr/bin/env bash
# Every GPU check in one run (device machine; prepare here first with `python bench/gpu_prepare.py`):
#   device run: bash bench/gpu_check.sh   (carry: .gpu .whl)
# CUDA tests (compiled == eager fp32/fp16 on real tiny.en weights, no recompiles, no host sync in the
# step, determinism), then the throughput benchmark against transformers in the same run.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 WHISPERFAST_GPU_ASSETS="$PWD/.gpu"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 300 python3 -m pytest -q -x -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
timeout "${BENCH_TIMEOUT:-420}" python3 bench/gpu_throughput.py --configs .gpu/configs --out "$OUT/throughput.json" \
    ${BENCH_ARGS:---shapes tiny large-v3 --engines whisperfast transformers-static} 2>&1 | tee "$OUT/bench.log"
# the full table (turbo, distil, transformers dynamic) needs a second call:
#   BENCH_ARGS="--shapes large-v3-turbo distil-large-v3" bash bench/gpu_check.sh
