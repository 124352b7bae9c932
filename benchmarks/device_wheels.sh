#!/usr/bin/env bash
# Download, on a machine with PyPI, the cp312 wheels that a bare CUDA machine (Python 3.12, torch
# preinstalled) lacks to run accelerl's GPU checks: gymnasium and MuJoCo. They land in .whl/
# (ignored by git), which benchmarks/device_check.sh installs from.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pkgs=(gymnasium==1.4.0 farama-notifications==0.0.4 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0
      pyopengl==3.1.10)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${pkgs[@]}"
du -sh .whl
