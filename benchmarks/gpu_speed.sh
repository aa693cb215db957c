#!/usr/bin/env bash
# Issue 28: TIGER's training and decoding speed on one GPU, against Hugging Face T5 and the chip's
# matmul peak (benchmarks/gpu_speed.py), in one device call.
#
#   device:  run(command="bash benchmarks/gpu_speed.sh", carry=["benchmarks/gpu_payload/data/beauty.tar.xz"], timeout_s=420)
#   here:    OUT=/tmp/gpuspeed_cpu PYTHON=.venv/bin/python OMP_NUM_THREADS=1 bash benchmarks/gpu_speed.sh --device cpu --tiny
#
# Arguments are passed to gpu_speed.py. Environment: OUT (default: a new temp folder), PYTHON
# (python3), GPU_SPEED_TIMEOUT (seconds, default 300: the whole benchmark, so that a failed first try
# leaves device time for a rerun within the session's 15 minutes; the call's 10-minute limit is never
# reached), GPU_SPEED_BUDGET (seconds the script itself plans with, default 240: it skips the
# sections left once they are spent, and writes gpu_speed.json/.md after every measurement, so a
# run cut short by `timeout` keeps what it measured).
#
# Needs on the device only PyTorch, NumPy and transformers: the benchmark imports recommenders/,
# bench's data/split/provenance/device/atomic/errors modules and tokenizers_zoo.collision (no ray,
# recbole, pydantic); the project runs from PYTHONPATH, nothing is installed. Beauty comes from the
# carried benchmarks/gpu_payload/data/beauty.tar.xz (0.9 MB; made by benchmarks/gpu_prepare.sh),
# unpacked into a temp folder; without it the benchmark falls back to synthetic data (and says so).
# Writes into $OUT: gpu_speed.json, gpu_speed.md, log.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
TIMEOUT=${GPU_SPEED_TIMEOUT:-300}
BUDGET=${GPU_SPEED_BUDGET:-240}

data_args=()
archive=benchmarks/gpu_payload/data/beauty.tar.xz
if [ -f "$archive" ] && [ -z "${BENCH_DATA_DIR:-}" ]; then
    data=$(mktemp -d)
    trap 'rm -rf "$data"' EXIT
    tar -xJf "$archive" -C "$data" && data_args=(--data-dir "$data")
fi

{
    echo "gpu_speed.sh: $(date -u +%FT%TZ), timeout ${TIMEOUT}s, budget ${BUDGET}s, out $OUT"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c "import torch, transformers, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$OUT/log.txt"

timeout -k 15 "$TIMEOUT" "$PYTHON" benchmarks/gpu_speed.py --out "$OUT" --budget "$BUDGET" "${data_args[@]}" "$@" 2>&1 | tee -a "$OUT/log.txt"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && echo "gpu_speed.sh: stopped by timeout after ${TIMEOUT}s; $OUT holds what was measured" | tee -a "$OUT/log.txt"
ls -l "$OUT" | tee -a "$OUT/log.txt"
exit "$rc"
