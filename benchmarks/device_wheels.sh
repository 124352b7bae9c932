#!/usr/bin/env bash
# Download, on a machine with PyPI, the cp312 wheels that a bare CUDA machine (Python 3.12, torch
# preinstalled) lacks to run accelerl's GPU checks: gymnasium and MuJoCo. They land in .whl/
# (ignored by git), which benchmarks/device_check.sh installs from. With --maniskill, also
# mani-skill 3.0.1 and what it needs beyond torch/numpy, into .whl-maniskill/ (for
# benchmarks/device_check_maniskill.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.whl-maniskill/' .git/info/exclude 2>/dev/null || echo '/.whl-maniskill/' >> .git/info/exclude
pkgs=(gymnasium==1.4.0 farama-notifications==0.0.4 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0
      pyopengl==3.1.10)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${pkgs[@]}"
if [ "${1:-}" = --maniskill ]; then
  # resolved for cp312 with dependencies, less what the GPU machine's torch install already has
  python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl-maniskill mani-skill==3.0.1 gymnasium==1.4.0
  rm -f .whl-maniskill/torch-* .whl-maniskill/nvidia_* .whl-maniskill/triton-* .whl-maniskill/numpy-*
  du -sh .whl-maniskill
fi
du -sh .whl
