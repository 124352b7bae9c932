#!/usr/bin/env bash
# Download, on a machine with PyPI, the cp312 wheels that a bare CUDA machine (Python 3.12, torch
# preinstalled) lacks to run accelerl's GPU checks: gymnasium and MuJoCo. They land in .whl/
# (ignored by git), which benchmarks/device_check.sh installs from. With --maniskill, also
# mani-skill 3.0.1 and what it needs beyond torch/numpy, into .whl-maniskill/ (for
# benchmarks/device_check_maniskill.sh), less the packages .whl/ or the GPU machine's image already
# has (two copies of one package stop pip's install there; the image's own stay as they are).
# The EGL/Vulkan loader packages (Debian amd64) go to .whl/gl/, which the checks unpack where the
# machine has no EGL loader (MuJoCo's off-screen rendering needs one).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.whl-maniskill/' .git/info/exclude 2>/dev/null || echo '/.whl-maniskill/' >> .git/info/exclude
pkgs=(gymnasium==1.4.0 farama-notifications==0.0.4 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0
      pyopengl==3.1.10)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${pkgs[@]}"
mkdir -p .whl/gl /tmp/accelerl-apt/partial
apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/accelerl-apt)
if apt-get "${apt[@]}" update -qq >/dev/null 2>&1; then
  (cd .whl/gl && apt-get "${apt[@]}" download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 libvulkan1)
else
  echo "device_wheels: apt-get could not fetch the EGL loader packages; .whl/gl/ stays empty" >&2
fi
# Packages of the GPU machine's image (Python 3.12, torch 2.11+cu130) that mani-skill pulls in.
image=(torch triton numpy scipy h5py pyyaml tqdm requests urllib3 idna certifi charset_normalizer lxml
       huggingface_hub hf_xet filelock fsspec packaging typing_extensions sympy mpmath networkx jinja2 markupsafe
       setuptools pillow imageio psutil rich pygments markdown_it_py mdurl cloudpickle tabulate six
       python_dateutil absl_py wrapt pyparsing matplotlib contourpy cycler fonttools kiwisolver)
# Not needed to train or evaluate: cv2 comes from the image's opencv-python-headless, imageio's
# ffmpeg writes videos only, and IPython serves mani-skill's notebook helpers alone.
unused=(opencv_python imageio_ffmpeg ipython ipython_pygments_lexers jedi parso prompt_toolkit wcwidth pexpect
        ptyprocess stack_data asttokens executing pure_eval traitlets matplotlib_inline)
if [ "${1:-}" = --maniskill ]; then
  # resolved for cp312 with dependencies, less what the GPU machine's torch install already has
  python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl-maniskill mani-skill==3.0.1 gymnasium==1.4.0
  rm -f .whl-maniskill/nvidia_*
  for wheel in .whl-maniskill/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z.-' 'a-z__')
    if printf '%s\n' "${image[@]}" "${unused[@]}" | grep -qx "$name" \
       || ls .whl/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z.-' 'a-z__' | grep -qx "$name"; then
      rm -f "$wheel"
    fi
  done
  # One transfer to the GPU machine carries at most 64 MiB: cut the wheels into pieces of at most
  # 48 MiB and pack them into part1/, part2/, ... of at most 56 MiB each, one part per call.
  python3 - <<'PY'
from pathlib import Path
root, piece, part_limit = Path(".whl-maniskill"), 48 << 20, 56 << 20
for old in root.glob("part*/*"):
    old.unlink()
chunks = []
for wheel in sorted(root.glob("*.whl")):
    data = wheel.read_bytes()
    if len(data) <= piece:
        chunks.append((wheel.name, data))
    else:
        chunks += [(f"{wheel.name}.piece{i // piece:02d}", data[i:i + piece]) for i in range(0, len(data), piece)]
    wheel.unlink()
sizes: list[int] = []  # first fit, largest first
for name, data in sorted(chunks, key=lambda c: -len(c[1])):
    k = next((i for i, used in enumerate(sizes) if used + len(data) <= part_limit), len(sizes))
    if k == len(sizes):
        sizes.append(0)
    sizes[k] += len(data)
    (root / f"part{k + 1}").mkdir(exist_ok=True)
    (root / f"part{k + 1}" / name).write_bytes(data)
parts = len(sizes)
print(f"device_wheels: .whl-maniskill/part1..part{parts}: carry one per call, "
      "each call starting with: mkdir -p /tmp/accelerl-wheels && cp .whl-maniskill/part*/* /tmp/accelerl-wheels/")
PY
  du -sh .whl-maniskill/part*
fi
du -sh .whl
