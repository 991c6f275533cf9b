#!/usr/bin/env bash
# The main job: dependencies, build, then `topkattn run` on the Llama-3.1-8B preset — prewarm the
# kernel cache for sm_80 and sm_90; on a GPU also plan, run, verify against the CPU fp64
# reference and time. Extra arguments go to `topkattn run` (e.g. --batch 8 --seq-len 65536).
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/build.sh
exec build/topkattn run --model llama-3.1-8b "$@"
