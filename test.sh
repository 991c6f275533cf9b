#!/usr/bin/env bash
# The tests: dependencies, build, then every test through CTest. GPU tests report themselves
# skipped on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
