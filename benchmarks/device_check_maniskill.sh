#!/usr/bin/env bash
# The ManiSkill part of the GPU check (a sibling of device_check.sh, at most ~8 minutes on one
# H200): the GPU-simulator test of tests/test_cuda.py (PushCube-v1, 16 batched envs, both stages,
# resume), the ManiSkill speed table (each mode on 32 batched envs) and a short PushCube-v1 RGB
# time-to-success run (accelerated vs from scratch, 2 seeds). Logs and tables go to OUT_DIR.
#
#   bash benchmarks/device_wheels.sh --maniskill     # once, where PyPI is reachable: .whl-maniskill/
#   bash benchmarks/device_check_maniskill.sh [OUT_DIR]
#
# mani-skill and its dependencies (about 165 MiB) are more than one transfer to a bare machine can
# carry: device_wheels.sh cuts them into .whl-maniskill/part1..partN of at most 56 MiB. While the
# machine stays warm, carry one part per call, each call copying it on with
#   mkdir -p /tmp/accelerl-wheels && cp .whl-maniskill/part*/* /tmp/accelerl-wheels/
# and run this script in the call that carries the last part and .whl/: it joins the cut wheels
# and installs them into a private folder.
# MANISKILL_SAC=path/to/ManiSkill/examples/baselines/sac/sac.py adds ManiSkill's own SAC to the table.
# DEVICE_CHECK_QUICK=1 shrinks every run to a smoke run (for trying the script on a CPU, where the
# runs use ManiSkill's CPU simulator and the GPU test skips).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-device-check-maniskill}}
mkdir -p "$out"
source benchmarks/device_env.sh
if ! python3 -c "import gymnasium, mani_skill" 2>/dev/null; then
  # the parts carried by earlier calls wait in /tmp/accelerl-wheels; this call's part is here
  mkdir -p /tmp/accelerl-wheels
  cp .whl-maniskill/part*/* /tmp/accelerl-wheels/ 2>/dev/null
  device_env_join /tmp/accelerl-wheels || exit 2
  device_env_install .whl /tmp/accelerl-wheels || exit 2
fi
device_env_gl || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/accelerl-inductor}
python3 -c "import torch, mani_skill, platform; print('python', platform.python_version(), '| torch', torch.__version__,
 '| mani-skill', mani_skill.__version__, '| cuda', torch.cuda.is_available())" 2>&1 | tee "$out/machine.txt"
status=0

timeout 200 python3 -m pytest -q -p no:cacheprovider "tests/test_cuda.py::test_maniskill_pushcube_on_the_gpu_simulator" \
  -o addopts="" -ra 2>&1 | tee "$out/test_cuda_maniskill.log" || status=1

device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
if [ "${DEVICE_CHECK_QUICK:-0}" = 1 ]; then
  speed=(--num-envs 2 --steps 600 --learning-starts 200 --extra "--batch-size 64 --eval-episodes 2")
  rgb=(--extra "--obs rgb --preset maniskill --num-envs 2 --image-size 32 --batch-size 32 --device $device"
       --total-steps 200 --learning-starts 100 --eval-every 200 --eval-episodes 1 --seeds 0 --jobs 2)
else
  speed=(--num-envs 32 --steps 12000)
  rgb=(--extra "--obs rgb --preset maniskill --num-envs 16 --device $device" --total-steps 16000
       --learning-starts 2000 --eval-every 4000 --eval-episodes 16 --seeds 0 1 --jobs 4)
fi
sac=()
[ -n "${MANISKILL_SAC:-}" ] && sac=(--maniskill-sac "$MANISKILL_SAC")
timeout 150 python3 benchmarks/maniskill_speed.py "${speed[@]}" --device "$device" "${sac[@]}" \
  --out /tmp/accelerl-bench --results-dir "$out" > "$out/maniskill-speed.md" 2> "$out/maniskill-speed.log" || status=1
cat "$out/maniskill-speed.md"

timeout 170 python3 benchmarks/time_to_return.py --env ManiSkill/PushCube-v1 --metric success_once --target 0.8 \
  "${rgb[@]}" --out /tmp/accelerl-bench --results-dir "$out" \
  > "$out/time-to-success-rgb.md" 2> "$out/time-to-success-rgb.log" || status=1
cat "$out/time-to-success-rgb.md"
echo "device_check_maniskill: exit $status; logs and tables in $out"
exit $status
