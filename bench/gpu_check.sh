#!/usr/bin/env bash
# Every GPU check in one device call, in priority order under one time budget that the script tracks
# itself; each result is appended to $OUT/results.jsonl the moment it exists, so a cut run keeps what it did.
#
#   here, first:  python bench/gpu_prepare.py        (writes .gpu/ and .whl/)
#   device call:  bash bench/gpu_check.sh            (carry [".gpu", ".whl"], timeout_s 600)
#   CPU dry run:  GPU_CHECK_DRY_RUN=1 bash bench/gpu_check.sh   (tests/test_gpu_kit.py runs it)
#
# Steps: 1. environment: whisperfast and soundfile import from the carried wheels; GPU, torch, transformers
#        2. large-v3, batch 1 and 8: whisperfast, then transformers with its static cache
#        3. the CUDA tests (all of them, no -x, durations)
#        4. large-v3 with the decoder's weight-only int8 (whisperfast-int8, the most wanted of the rest); then
#           turbo, distil and tiny; then transformers' dynamic cache
# The dry run makes a fresh venv holding only what the device image holds of our dependencies (torch,
# transformers, numpy, safetensors, tokenizers, huggingface_hub, tqdm, pytest, hypothesis: no soundfile, no cffi),
# installs the carried wheels exactly as the device run does, and runs every step at toy scale on CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_out}"
mkdir -p "$OUT"
BUDGET="${GPU_CHECK_BUDGET:-540}"
PY=python3 SITE=/tmp/site BATCHES="1 8" REPEATS=3 TOKENS=64
BIG="large-v3:whisperfast large-v3:transformers-static"
REST="large-v3:whisperfast-int8 large-v3-turbo:whisperfast distil-large-v3:whisperfast tiny:whisperfast
      tiny:transformers-static large-v3:transformers-dynamic"
if [ -n "${GPU_CHECK_DRY_RUN:-}" ]; then
    DRY="$(mktemp -d)"
    pins=$(python3 -c 'from importlib.metadata import version as v; print(" ".join(f"{n}=={v(n)}" for n in
        ("torch", "transformers", "numpy", "safetensors", "tokenizers", "huggingface_hub", "tqdm", "pytest",
         "hypothesis")))')
    python3 -m venv "$DRY/venv" && "$DRY/venv/bin/python" -m pip install -q $pins || exit 1
    PY="$DRY/venv/bin/python" SITE="$DRY/site" BATCHES="1 2" REPEATS=1 TOKENS=8
    export OMP_NUM_THREADS=1  # plumbing, not speed: one thread cannot stall in OpenMP barriers on a busy box
    BIG="toy:whisperfast toy:transformers-static" REST="toy:whisperfast-int8 toy:whisperfast-eager"
fi
T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }
record() {  # record key=value ... -> one JSON line
    "$PY" -c 'import json, sys; print(json.dumps(dict(a.split("=", 1) for a in sys.argv[1:])))' "$@" \
        | tee -a "$OUT/results.jsonl"
}

# 1. environment
"$PY" -m pip install -q --no-index --no-deps --no-compile --find-links .whl --target "$SITE" \
    soundfile cffi pycparser || { record step=env error="carried wheels do not install"; exit 1; }
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 WHISPERFAST_GPU_ASSETS="$PWD/.gpu"
"$PY" - <<'EOF' | tee -a "$OUT/results.jsonl" || exit 1
import json
import soundfile, torch, transformers
import whisperfast  # imports soundfile through api -> audio
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (dry run)"
print(json.dumps({"step": "env", "device": dev, "torch": torch.__version__, "cuda": torch.version.cuda,
                  "transformers": transformers.__version__, "soundfile": soundfile.__version__}))
EOF

bench() {  # bench RESERVE JOB...: the benchmark with what is left of the budget after RESERVE seconds
    local reserve=$1 t
    shift
    t=$(($(left) - reserve))
    if [ "$t" -lt 30 ]; then record step=bench skipped="$*" why="budget"; return; fi
    timeout "$t" "$PY" bench/gpu_throughput.py --configs .gpu/configs --jsonl "$OUT/results.jsonl" \
        --jobs "$@" --batches $BATCHES --repeats $REPEATS --tokens $TOKENS --timeout "$t" --deadline $(($(date +%s) + t - 5)) \
        2>&1 | tee -a "$OUT/bench.log"
}

# 2. the shape that matters most
bench 200 $BIG

# 3. the CUDA tests (they skip without CUDA)
t=$(($(left) - 60))
[ "$t" -gt 240 ] && t=240
if [ "$t" -ge 30 ]; then
    timeout "$t" "$PY" -m pytest -q -m cuda tests/test_cuda.py --durations=0 -p no:cacheprovider \
        --junitxml "$OUT/cuda_tests.xml" 2>&1 | tee "$OUT/cuda_tests.log"
    rc=${PIPESTATUS[0]}
    record step=cuda_tests rc="$rc" summary="$(tail -n 1 "$OUT/cuda_tests.log")"
else
    record step=cuda_tests skipped=tests/test_cuda.py why=budget
fi

# 4. the other shapes, as far as the budget goes
bench 0 $REST
record step=done seconds="$((SECONDS - T0))"
