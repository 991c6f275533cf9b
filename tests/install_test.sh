#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds + runs a downstream CMake project that
# finds it with find_package(topkattn). Usage: tests/install_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/install" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
cmake -S "$src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" > /dev/null
cmake --build "$tmp/build" > /dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/build/downstream"
if ldd "$tmp/prefix/lib/libtopkattn.so" | grep -E "libcuda|libnvrtc"; then
  echo "libtopkattn.so links the CUDA driver or NVRTC; both must be dlopened" >&2
  exit 1
fi
echo "install test passed"
