#!/usr/bin/env bash
# Installs the build dependencies from Debian's packages when any is missing (needs root or sudo).
# The CUDA toolkit (headers + NVRTC, no driver needed) is expected at /usr/local/cuda.
set -euo pipefail
packages=(cmake g++ make llvm-16-dev libzstd-dev libfmt-dev nlohmann-json3-dev libdlpack-dev libgtest-dev python3 python3-numpy python3-pip clang-format-14)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
if [ ! -f /usr/local/cuda/include/cuda.h ] && [ -z "${CUDA_HOME:-}" ]; then
  echo "the CUDA toolkit (cuda.h, libnvrtc) was not found at /usr/local/cuda; set CUDA_HOME" >&2
  exit 1
fi
# cuobjdump and nvdisasm (PyPI wheels, 6 MB) when the toolkit has none: a test reads the SASS that
# ptxas makes of the kernels (tests/emit_cli_test.cpp, the VIMNMX check).
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.deps/cuda-tools"
have_cuobjdump() {
  command -v cuobjdump > /dev/null && return 0
  local d
  for d in ${CUDA_HOME:+"$CUDA_HOME"} /usr/local/cuda "$tools/nvidia/cu13"; do
    [ -x "$d/bin/cuobjdump" ] && return 0
  done
  return 1
}
if ! have_cuobjdump; then
  echo "installing cuobjdump, nvdisasm into $tools"
  python3 -m pip install --quiet --disable-pip-version-check --target "$tools" 'nvidia-cuda-cuobjdump==13.*' \
    'nvidia-cuda-nvdisasm==13.*' 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
