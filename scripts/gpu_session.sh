#!/usr/bin/env bash
# One device call's worth of GPU work over a build carried from the build machine (see README,
# "Performance"): stages by name, logs and tables under $OUT (default ./gpu-out), a summary last.
#
#   scripts/gpu_session.sh tests sanitize python          # correctness: ~5 min cold
#   scripts/gpu_session.sh bench-select bench-indexer     # new tables for bench/results/
#   scripts/gpu_session.sh bench-decode latency
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export TOPKATTN_CACHE_DIR=${TOPKATTN_CACHE_DIR:-/tmp/topkattn-cache}
export TOPKATTN_LIBRARY=${TOPKATTN_LIBRARY:-$PWD/build/libtopkattn.so}
TESTS=build/tests/topkattn_tests
DATE=$(date -u +%F)
declare -a SUMMARY=()

stage() {  # name, command...: runs, logs to $OUT/name.log, records the exit status
  local name=$1
  shift
  local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  SUMMARY+=("$(printf '%-16s rc=%-3d %4ds  %s' "$name" "$rc" $((SECONDS - t0)) "$(tail -n 1 "$OUT/$name.log")")")
}

# Small cases of every new kernel, for the sanitizer (it runs them 10-100x slower).
SANITIZE_FILTER='Cases/SelectMatrix.*k_1_*:Cases/SelectMatrix.*split_unsorted*:Cases/SelectMatrix.*ties_split*dtype_3*'
SANITIZE_FILTER+=':Cases/SparseMatrix.*:Cases/IndexerGpu.*fp8_q2_short*:FidelityGpu.*:SelectGpu.*'
SANITIZE_FILTER+=':Cases/DecodeMatrix.*paged16*'

for what in "$@"; do
  case $what in
    tests) stage tests "$TESTS" --gtest_brief=1 ;;
    sanitize)
      stage memcheck compute-sanitizer --tool memcheck --error-exitcode 9 "$TESTS" --gtest_brief=1 --gtest_filter="$SANITIZE_FILTER"
      stage racecheck compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 "$TESTS" --gtest_brief=1 --gtest_filter="$SANITIZE_FILTER"
      ;;
    python)
      for t in decode_gpu select_gpu sparse_gpu fidelity_gpu binding_cpu analyze_cpu; do
        stage "py-$t" python3 "python/tests/test_$t.py"
      done
      ;;
    bench-select) stage bench-select python3 bench/select.py --out "$OUT/select-$DATE.md" ;;
    bench-indexer) stage bench-indexer python3 bench/indexer.py --out "$OUT/indexer-$DATE.md" ;;
    bench-decode) stage bench-decode python3 bench/decode.py --out "$OUT/decode-$DATE.md" ;;
    latency)
      stage prewarm build/topkattn prewarm --model llama-3.1-8b --arch sm_90
      stage latency python3 bench/plan_latency.py --cache-dir "$TOPKATTN_CACHE_DIR" --out "$OUT/plan-latency-$DATE.md"
      ;;
    run) stage run-llama build/topkattn run --model llama-3.1-8b; stage run-deepseek build/topkattn run --model deepseek-v3.2 ;;
    *) echo "unknown stage $what" >&2; exit 2 ;;
  esac
done
printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
