# Sourced by benchmarks/device_check*.sh: makes a bare CUDA machine (Python 3.12 and torch, no
# gymnasium/MuJoCo/ManiSkill, no EGL loader) ready to run accelerl from this checkout.
#   device_env_install DIR...   pip-installs every wheel in DIR... into a private folder on PYTHONPATH
#   device_env_join DIR         joins wheels that device_wheels.sh cut into pieces (NAME.whl.pieceNN)
#   device_env_gl               unpacks the EGL/Vulkan loader packages of .whl/gl/ where none is installed
# Both come from benchmarks/device_wheels.sh, run where PyPI and apt are reachable.

device_env_install() {
  local wheels=()
  for dir in "$@"; do wheels+=("$dir"/*.whl); done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/accelerl-site \
    "${wheels[@]}" || return 1
  export PYTHONPATH=/tmp/accelerl-site${PYTHONPATH:+:$PYTHONPATH}
}

device_env_join() {
  local first wheel missing=0
  for first in "$1"/*.whl.piece00; do
    [ -e "$first" ] || continue
    wheel=${first%.piece00}
    python3 - "$wheel" <<'PY' || missing=1
import sys, zipfile
from pathlib import Path
wheel = Path(sys.argv[1])
pieces = sorted(wheel.parent.glob(wheel.name + ".piece*"))
with open(wheel, "wb") as out:
    for piece in pieces:
        out.write(piece.read_bytes())
try:
    damaged = zipfile.ZipFile(wheel).testzip() is not None
except (OSError, zipfile.BadZipFile):
    damaged = True
if damaged:
    wheel.unlink()
    raise SystemExit(f"device_env: {wheel.name} does not join from its {len(pieces)} piece(s)")
PY
  done
  [ "$missing" = 0 ] || { echo "device_env: a wheel is incomplete: carry every part of .whl-maniskill/" >&2; return 1; }
}

device_env_gl() {
  if ! ldconfig -p 2>/dev/null | grep -q 'libEGL\.so'; then
    ls .whl/gl/*.deb >/dev/null 2>&1 || { echo "device_env: no EGL loader and no .whl/gl/*.deb (MuJoCo cannot render)" >&2; return 0; }
    for deb in .whl/gl/*.deb; do dpkg -x "$deb" / || return 1; done
    ldconfig
  fi
  # the driver's vendor files, where the image mounts them outside the loaders' default search path
  local nv=/usr/local/nvidia/share
  [ -f $nv/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-$nv/glvnd/egl_vendor.d/10_nvidia.json}
  [ -f $nv/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$nv/vulkan/icd.d/nvidia_icd.json}
  return 0
}
