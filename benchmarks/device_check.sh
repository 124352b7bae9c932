#!/usr/bin/env bash
# The GPU check, as one command of at most ~8 minutes on one H200 (16 cores): the CUDA tests
# (tests/test_cuda.py: every mode on CUDA, compiled updates against eager with inductor's GPU
# kernels, no host-device sync in the update loop, async envs, resume across devices) and the GPU
# speed table (benchmarks/speed.py --paths --device cuda). Logs and tables go to OUT_DIR.
#
#   bash benchmarks/device_wheels.sh                 # once, where PyPI is reachable: .whl/
#   bash benchmarks/device_check.sh [OUT_DIR]        # on the GPU machine, from the repo root
#
# A bare CUDA machine with torch but no gymnasium/MuJoCo installs them from .whl/ into a
# private folder; accelerl itself runs from this checkout (no pip install needed).
# DEVICE_CHECK_QUICK=1 shrinks the speed table to a smoke run (for trying the script on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-device-check}}
mkdir -p "$out"
source benchmarks/device_env.sh
if ! python3 -c "import gymnasium, mujoco" 2>/dev/null; then
  [ -d .whl ] || { echo "device_check: gymnasium/mujoco missing and no .whl/ (run benchmarks/device_wheels.sh)" >&2; exit 2; }
  device_env_install .whl || exit 2
fi
device_env_gl || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/accelerl-inductor}

python3 - > "$out/machine.txt" 2>&1 <<'EOF'
import os, platform, torch, gymnasium, mujoco
print("python", platform.python_version(), "| torch", torch.__version__, "| gymnasium", gymnasium.__version__,
      "| mujoco", mujoco.__version__, "| cores", os.cpu_count())
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "-")
EOF
cat "$out/machine.txt"
status=0

# 1. The CUDA tests (skipped without CUDA, so on a CPU this only checks that they collect).
# Four workers share the GPU (and the 16 cores' compile threads); -o addopts="" drops the
# suite's file-per-worker distribution, which would put this one file on one worker.
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -o addopts="" -n 4 --dist load -ra --durations=10 2>&1 \
  | tee "$out/test_cuda.log" || status=1

# 2. The GPU speed table: compiled against eager, the velocity-masked and pixel paths, async envs.
if [ "${DEVICE_CHECK_QUICK:-0}" = 1 ]; then
  # eager only: inductor's C++ builds take minutes on a small CPU
  sizes=(--env Pendulum-v1 --steps 64 --warmup 300 --slow-steps 32 --slow-warmup 300 --pixel-env "" --num-envs 2
         --compile off)
else
  sizes=(--env Hopper-v5 --steps 2000 --warmup 500 --slow-steps 1000 --slow-warmup 500 --num-envs 8 16 --compile both)
fi
device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
timeout 240 python3 benchmarks/speed.py --paths --device "$device" --algo td3 "${sizes[@]}" \
  --results-dir "$out" > "$out/speed-paths-td3.md" 2> "$out/speed.log" || status=1
cat "$out/speed-paths-td3.md"
echo "device_check: exit $status; logs and tables in $out"
exit $status
