#!/usr/bin/env bash
# One device call's worth of GPU work over a build carried from the build machine (see README,
# "Performance"): stages by name; in $OUT (default ./gpu-out) a summary and results.tgz, which
# holds every table and log (the device returns at most 8 files: tar xzf results.tgz).
#
#   scripts/gpu_session.sh tests sanitize python          # correctness: ~5 min cold
#   scripts/gpu_session.sh bench-select bench-indexer     # new tables for bench/results/
#   scripts/gpu_session.sh profile                        # ncu per-kernel times (PROFILE_SHAPES)
#   scripts/gpu_session.sh phases                         # select_rows per-phase clocks
#   scripts/gpu_session.sh phases-decode                  # the same at decode's selection rows (256 x 32K, 32 x 32K)
#   scripts/gpu_session.sh phases-coop                    # the cooperative grid's phases (TKA_PHASE_CLOCKS) and the clusters'
#   scripts/gpu_session.sh stalls                         # ncu warp stalls of batch-1 decode's kernels
#   scripts/gpu_session.sh stalls-mla                     # the same for MLA sparse attention at B = 64
#   scripts/gpu_session.sh stalls-select                  # the same for the selection's clusters at 32 x 128K
#   scripts/gpu_session.sh ab-TKA_SOME_MACRO              # a macro-gated kernel change against the build without it
#   scripts/gpu_session.sh abi-TKA_INDEXER_TMA            # the same for the indexer decode
#   scripts/gpu_session.sh checks-TKA_A,TKA_B              # the suite and sanitizers with both macros on;
#   AB_TIMES_ONLY=1 scripts/gpu_session.sh ab-TKA_A abi-TKA_B   # then only their times
#   AB_TIMES_ONLY=1 AB_NO_PROFILE=1 scripts/gpu_session.sh ab-TKA_A  # graph replay only, no ncu (~1 minute)
#   scripts/gpu_session.sh overlap                        # programmatic dependent launch off/on/early
#   scripts/gpu_session.sh probe-sort_cost                # a program of bench/probes, built there by nvcc
#   scripts/gpu_session.sh bench-decode latency pack-cache     # cache.tgz: carry it back as
#                                                         # build-gpu-cache/cache.tgz
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
RESULTS=${OUT:-gpu-out}  # summary.txt and results.tgz, written after every stage
OUT=$RESULTS.work        # the stages' tables and logs, packed into results.tgz (with what earlier
                         # runs left there: a warm machine keeps it between calls)
LOGS=$OUT/logs
mkdir -p "$RESULTS" "$LOGS"
export TOPKATTN_CACHE_DIR=${TOPKATTN_CACHE_DIR:-/tmp/topkattn-cache}
# A cache packed by an earlier call (stage pack-cache) and carried back as build-gpu-cache/: its
# kernels need no compile in this call.
if [ -f build-gpu-cache/cache.tgz ]; then
  mkdir -p "$TOPKATTN_CACHE_DIR" && tar xzf build-gpu-cache/cache.tgz -C "$TOPKATTN_CACHE_DIR"
fi
export TOPKATTN_LIBRARY=${TOPKATTN_LIBRARY:-$PWD/build/libtopkattn.so}
TESTS=build/tests/topkattn_tests
DATE=$(date -u +%F)
declare -a SUMMARY=()

stage() {  # name, command...: runs, logs to $OUT/name.log, records the exit status
  local name=$1
  shift
  local t0=$SECONDS
  # STAGE_TIMEOUT (seconds) keeps one stuck stage from eating the whole device call.
  if declare -F "$1" > /dev/null; then
    "$@" > "$LOGS/$name.log" 2>&1
  else
    timeout "${STAGE_TIMEOUT:-0}" "$@" > "$LOGS/$name.log" 2>&1
  fi
  local rc=$?
  SUMMARY+=("$(printf '%-16s rc=%-3d %4ds  %s' "$name" "$rc" $((SECONDS - t0)) "$(tail -n 1 "$LOGS/$name.log")")")
  # After every stage: a device call cut short still returns what finished.
  printf '%s\n' "${SUMMARY[@]}" > "$RESULTS/summary.txt"
  tar czf "$RESULTS/results.tgz" -C "$OUT" .
}

# The whole suite in SHARDS processes at once: cold, most of its time is NVRTC on the CPU, and the
# cache lets processes that need the same kernel share one compile. Host-only tests that take
# minutes of CPU and need no GPU run in CI (.ci/run), not here: those that compile every template
# variant for sm_80 and sm_90, the emit command's, and the decode cases' host premises
# (TEST_FILTER overrides).
HOST_COMPILE_TESTS='*Compile.*:SelectSpace.EveryCompiledVariantCompiles:*DecodeSpaceArch.*:IndexerSpace.Every*:EmitCli.*:DecodeCases.*'
# Runs `command...` in `shards` processes at once, each a GoogleTest shard (GTEST_TOTAL_SHARDS,
# GTEST_SHARD_INDEX) with its own STAGE_TIMEOUT and its log $LOGS/NAME-shardI.log; prints and
# returns how many failed.
in_shards() {  # shards, name, command...
  local shards=$1 name=$2 failed=0 i
  shift 2
  for ((i = 0; i < shards; i++)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout "${STAGE_TIMEOUT:-0}" "$@" > "$LOGS/$name-shard$i.log" 2>&1 &
  done
  for ((i = 0; i < shards; i++)); do wait -n || failed=$((failed + 1)); done
  echo "$failed"
  [ "$failed" -eq 0 ]
}

sharded_tests() {
  local shards=${SHARDS:-8} failed
  failed=$(GTEST_FILTER=${TEST_FILTER:--$HOST_COMPILE_TESTS} in_shards "$shards" tests "$TESTS")
  report_shards tests "$shards" "$failed"
}

# A line a process of in_shards NAME (shard_outcome, and a sanitizer's first report if any), then
# the stage's last line, all that summary.txt keeps of it; fails if any process failed.
report_shards() {  # name, shards, failed
  local name=$1 shards=$2 failed=$3 i unfinished=0 first
  for ((i = 0; i < shards; i++)); do
    shard_outcome "$LOGS/$name-shard$i.log" "shard $i" || unfinished=$((unfinished + 1))
    first=$(grep -m 1 -E '^========= (Error|Invalid)' "$LOGS/$name-shard$i.log")
    [ -n "$first" ] && echo "  first report: $first"
  done
  echo "$name: $shards shards, $failed failed ($unfinished without a summary)"
  [ "$failed" -eq 0 ]
}

# One line for one GoogleTest process's log (kept in results.tgz): its summary, the tests that
# failed, and, for a process with no summary (stopped at STAGE_TIMEOUT, or crashed), the test it
# was in. GoogleTest flushes each "[ RUN ]" line as the test starts, so a killed process still
# names it. Returns 1 for a log without a summary.
shard_outcome() {  # log, label
  local log=$1 label=$2 summary failed running
  summary=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?|(ERROR|RACECHECK) SUMMARY' "$log" | tr '\n' ' ')
  failed=$(grep -E '^\[  FAILED  \] [^ ]+ \([0-9]+ ms\)' "$log" | awk '{print $4}' | tr '\n' ' ')
  echo "$label: ${summary:-no summary (stopped at STAGE_TIMEOUT, or crashed)}${failed:+ failed: $failed}"
  if [ -z "$summary" ]; then
    running=$(grep -E '^\[ RUN      \] ' "$log" | tail -n 1 | awk '{print $4}')
    echo "  was running: ${running:-no test started}"
    return 1
  fi
}

# Per-kernel times (ncu, one line per kernel launch) at the shapes that the targets name.
PROFILE_SHAPES=${PROFILE_SHAPES:-"decode:1:32768 decode:1:131072 decode:16:131072 select:32:131072 select:2048:131072 indexer:16:131072"}
profile() {
  local s op b n
  for s in $PROFILE_SHAPES; do
    IFS=: read -r op b n <<< "$s"
    echo "== $op batch $b N $n"
    ncu --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv \
      python3 bench/kernel_times.py "$op" --batch "$b" --seq-len "$n" --runs 2 2>&1 |
      grep -E '^"[0-9]' | awk -F'","' '{gsub(/[",]/, "", $NF); print $5 "\t" $(NF-2) "\t" $NF}' | grep tka:: || return 1
  done
  echo "profile done"
}

# One compute-sanitizer tool over the sanitizer list in SAN_SHARDS processes at once (default 4):
# the tools spend most of their time on the CPU, and racecheck of the whole list did not fit in one
# device call run as one process. Each process keeps its log; a summary line per process.
sharded_sanitize() {  # tool, extra tool flags...
  local tool=$1 shards=${SAN_SHARDS:-4} failed
  shift
  # A shard whose tests launch no kernel (fewer tests than shards, or only tests that skip) is not
  # a failure: by default the tool fails a process that never initializes CUDA.
  failed=$(in_shards "$shards" "$tool" compute-sanitizer --tool "$tool" "$@" --require-cuda-init=no \
    --error-exitcode 9 "$TESTS" --gtest_filter="$SANITIZE_FILTER")
  report_shards "$tool" "$shards" "$failed"
}

# Both tools, a stage each, named memcheckSUFFIX and racecheckSUFFIX.
sanitize_stages() {  # suffix
  stage "memcheck$1" sharded_sanitize memcheck
  stage "racecheck$1" sharded_sanitize racecheck --racecheck-report hazard
}

# Small cases of every kernel, for the sanitizer (it runs them 10-100x slower).
SANITIZE_CASES='Cases/SelectMatrix.*k_1_*:Cases/SelectMatrix.*split_unsorted*:Cases/SelectMatrix.*ties_split*dtype_3*'
SANITIZE_CASES+=':Cases/SparseMatrix.*:Cases/IndexerGpu.*fp8_q2_short*:Cases/IndexerGpu.*fp8_long_tiles*:FidelityGpu.*:SelectGpu.*'
SANITIZE_CASES+=':Cases/DecodeMatrix.*paged16*:Cases/DecodeMatrix.*q2_one_read:Cases/SelectMatrix.*streamed_tail*'
SANITIZE_CASES+=':Cases/SelectMatrix.*sample_low_retry*:Cases/SelectMatrix.*k_200_sort*'
SANITIZE_CASES+=':Cases/SelectMatrix.*Reference/cluster_*dtype_3*:Cases/SelectMatrix.*sort_t*'  # sorts at 256, 1024 threads
# 16-bit rows in clusters: a slice's partial last chunk at the end of the input's allocation, and
# a ring that wraps (9 steps through 4) under the bucket ranks' remote stores.
SANITIZE_CASES+=':Cases/SelectMatrix.*Reference/cluster_unaligned_dtype_1*:Cases/SelectMatrix.*Reference/cluster_of_3_dtype_1*'
SANITIZE_CASES+=':Cases/DecodeMatrix.*paged64_head_k8192_n20000'  # decode's split selection (8 rows of 20000)
# The edge cases most likely to read or write out of bounds: block-table entries outside the pool,
# sequences longer than the plan or the cache, d = 256 with padded rows, padded selections (k > n,
# n = 0, per-row lengths), paged indexer caches (mma.sync and wgmma with MLA attention), graph replay.
SANITIZE_CASES+=':DecodeGpu.OutOfPool*:Cases/DecodeMatrix.*longer_than*:Cases/DecodeMatrix.*d256_g4_contig_padded*'
SANITIZE_CASES+=':Cases/SelectMatrix.*dtype_3*pad_1*:Cases/IndexerGpu.*fp8_heads8_paged16:Cases/IndexerGpu.*fp8_paged_mla'
SANITIZE_CASES+=':Cases/IndexerGpu.*inf_query*:IndexerGpuGraph.*:Cases/DecodeMatrix.*split_short'
SANITIZE_CASES+=':Cases/DecodeMatrix.*g4_contig_head_inf_keys:Cases/DecodeMatrix.*paged16_group_q2_inf_keys'
SANITIZE_CASES+=':Cases/DecodeMatrix.*ratio1_neg_inf_splits'  # attend splits holding only -inf scores
# The cooperative grid (a tuning choice): padded rows with per-row lengths, ties spread over chunks,
# and every decode case with few long rows (selection and attention in one grid).
SANITIZE_CASES+=':Cases/SelectMatrix.*coop_lengths_pad_dtype_1*:Cases/SelectMatrix.*coop_few_values_dtype_3*'
SANITIZE_CASES+=':DecodeGpu.CooperativeSelectionMatchesTheReference'
SANITIZE_CASES+=':DecodeGpu.ClusterSelectionMatchesTheReference'  # decode's clusters (select_split 3)
# The bucket ranks with a crowded first bucket, and past it (the lists packed for the fallback).
SANITIZE_CASES+=':Cases/SelectMatrix.*cluster_outliers_dtype_3*:Cases/SelectMatrix.*cluster_many_outliers_dtype_3*'
SANITIZE_FILTER=${SANITIZE_FILTER:-$SANITIZE_CASES}  # the environment's filter, if given, instead

# A kernel change behind a TOPKATTN_KERNEL_DEFINES macro (or several, comma-separated), against the
# build without it, in one call (~6 minutes cold): with the macro, the GPU cases of the op, memcheck
# of a few and racecheck of two; then ncu per-kernel times without and with it, and graph replay
# times without, with, and without again (separate processes: the macro is read at start-up and is
# part of the cache key). Tables: $OUT/ab-NAME-{base,macro,base2}-DATE.md. Stage ab-NAME: decode's
# split selection at batch 1, and the selection op at 32 rows (ab-NAME-RUN-select-DATE.md);
# abi-NAME: the indexer decode.
AB_CASES='Cases/SelectMatrix.*:Cases/DecodeMatrix.*:SelectGpu.*:DecodeGpu.*:TuneGpu.Select*:TuneGpu.Decode*'
AB_CASES+=':Cases/IndexerGpu.*'  # the indexer's top-k runs the selection op's kernels
AB_SANITIZE='Cases/SelectMatrix.*split*:Cases/DecodeMatrix.*k8192_n20000:Cases/DecodeMatrix.*b1_n100003'
AB_SANITIZE+=':Cases/DecodeMatrix.*d256_g4_contig_padded*:Cases/DecodeMatrix.*d64_g8_paged16_group_q2_nan_keys'
AB_RACECHECK='Cases/SelectMatrix.*split_unsorted*:Cases/DecodeMatrix.*paged64_head_k8192_n20000'
AB_RACECHECK+=':Cases/DecodeMatrix.*d256_g4_contig_padded*:Cases/DecodeMatrix.*d64_g8_paged16_group_q2_nan_keys'  # score tiles of d 256, 64
# The selection's streamed rows (one CTA a row with a partial last step, and a cluster's slices)
# and its sorts at 256 and 1024 threads.
AB_SANITIZE+=':Cases/SelectMatrix.*streamed_tail*:Cases/SelectMatrix.*cluster_odd_n*:Cases/SelectMatrix.*sort_t*'
AB_RACECHECK+=':Cases/SelectMatrix.*streamed_tail*:Cases/SelectMatrix.*cluster_odd_n*:Cases/SelectMatrix.*sort_t*'
# Clusters of sizes that are not powers of two, sorted, with ties spread over their slices.
AB_SANITIZE+=':Cases/SelectMatrix.*cluster_of_3_*:Cases/SelectMatrix.*cluster_of_5_ties*'
AB_RACECHECK+=':Cases/SelectMatrix.*cluster_of_5_ties*dtype_3*'
ABI_CASES='Cases/IndexerGpu.*:IndexerGpuGraph.*:TuneGpu.Indexer*:Cases/SparseMatrix.*'  # its attention: sparse_attend
ABI_SANITIZE='Cases/IndexerGpu.*fp8_long_tiles:Cases/IndexerGpu.*fp8_heads40_special:Cases/SparseMatrix.*mla*'
ABI_RACECHECK='Cases/IndexerGpu.*fp8_heads40_special:Cases/SparseMatrix.*mla_128*'  # racecheck is the slow one
ab() {  # macro, op (decode | indexer)
  # AB_CASES_FILTER, AB_SAN_FILTER, AB_RACE_FILTER: other test filters for this call.
  local def=$1 tag=${1//,/-} rc=0 run defs cases=${AB_CASES_FILTER:-$AB_CASES} san=${AB_SAN_FILTER:-$AB_SANITIZE}
  local race=${AB_RACE_FILTER:-$AB_RACECHECK}
  local shapes="decode:1:32768 decode:1:131072" bench=(python3 bench/decode.py --shapes 1x32K 1x128K 8x32K --no-compile)
  if [ "${2:-decode}" = indexer ]; then
    cases=$ABI_CASES san=$ABI_SANITIZE race=$ABI_RACECHECK shapes="indexer:16:131072 indexer:1:131072"
    bench=(python3 bench/indexer.py --shapes 16x128K 1x128K)
  elif [ -n "${AB_CONFIG:-}" ]; then  # AB_CONFIG='select_split=3': decode plans take that tuning choice
    python3 bench/probes/decode_config_db.py --out "$OUT/ab-$tag-db.json" $AB_CONFIG || rc=1
    bench+=(--tuning-db "$OUT/ab-$tag-db.json")
  fi
  if [ -z "${AB_TIMES_ONLY:-}" ]; then  # set when a checks- stage covered the macro already
    echo "== tests with $def"
    TOPKATTN_KERNEL_DEFINES=$def TEST_FILTER=$cases SHARDS=${SHARDS:-16} sharded_tests | grep -E '^\[  FAILED|shards, ' || rc=1
    echo "== memcheck with $def"
    TOPKATTN_KERNEL_DEFINES=$def timeout "${STAGE_TIMEOUT:-0}" compute-sanitizer --tool memcheck --error-exitcode 9 "$TESTS" --gtest_brief=1 \
      --gtest_filter="$san" 2>&1 | tail -n 3 || rc=1
    echo "== racecheck with $def"
    TOPKATTN_KERNEL_DEFINES=$def timeout "${STAGE_TIMEOUT:-0}" compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 \
      "$TESTS" --gtest_brief=1 --gtest_filter="$race" 2>&1 | tail -n 3 || rc=1
  fi
  for run in base macro base2; do
    defs=""
    [ "$run" = macro ] && defs=$def
    if [ "$run" != base2 ] && [ -z "${AB_NO_PROFILE:-}" ]; then  # AB_NO_PROFILE=1: graph replay only
      echo "== $run: ncu"
      TOPKATTN_KERNEL_DEFINES=$defs PROFILE_SHAPES=${AB_SHAPES:-$shapes} profile || rc=1
    fi
    echo "== $run: graph replay"
    TOPKATTN_KERNEL_DEFINES=$defs "${bench[@]}" --out "$OUT/ab-$tag-$run-$DATE.md" > /dev/null || rc=1
    grep -E '^\| (B=|[0-9]+ x)' "$OUT/ab-$tag-$run-$DATE.md" | cut -d'|' -f2-5
    if [ "${2:-decode}" = decode ]; then  # the selection op runs the split selection's kernels too
      TOPKATTN_KERNEL_DEFINES=$defs python3 bench/select.py --shapes 32x128K 32x32K 1x128K \
        --out "$OUT/ab-$tag-$run-select-$DATE.md" > /dev/null || rc=1
      grep -E '^\| [0-9]+ x' "$OUT/ab-$tag-$run-select-$DATE.md" | cut -d'|' -f2-5
    fi
  done
  echo "ab $def: rc=$rc"
  return $rc
}

probe() {  # name: a standalone program of bench/probes (see its first lines); fails as it does
  mkdir -p build/probes && nvcc -O3 -arch=sm_90a -std=c++17 -Itemplates -o "build/probes/$1" "bench/probes/$1.cu" &&
    timeout "${STAGE_TIMEOUT:-0}" "build/probes/$1"
}

for what in "$@"; do
  case $what in
    tests) stage tests sharded_tests ;;
    sanitize) sanitize_stages "" ;;
    python)
      for t in decode_gpu select_gpu sparse_gpu fidelity_gpu binding_cpu analyze_cpu; do
        stage "py-$t" python3 "python/tests/test_$t.py"
      done
      ;;
    bench-select) stage bench-select python3 bench/select.py --out "$OUT/select-$DATE.md" ;;
    phases)
      stage phases python3 bench/select_phases.py --out "$OUT/select-phases-$DATE.md"
      stage phases-unsorted python3 bench/select_phases.py --unsorted --out "$OUT/select-phases-unsorted-$DATE.md"
      ;;
    phases-coop)  # the cooperative grid's phases against the cluster path's, few long rows, unsorted
      stage phases-coop python3 bench/select_phases.py --unsorted --shapes 32x128K 16x128K 32x32K \
        --configs t512s4o t512s4c8 --out "$OUT/select-phases-coop-$DATE.md"
      ;;
    phases-decode)  # decode's selection rows (its selection runs the same code, unsorted): d=64 and batch 1
      stage phases-decode python3 bench/select_phases.py --unsorted --shapes 256x32K 32x32K \
        --out "$OUT/select-phases-decode-$DATE.md"
      ;;
    bench-indexer) stage bench-indexer python3 bench/indexer.py --out "$OUT/indexer-$DATE.md" ;;
    bench-decode) stage bench-decode python3 bench/decode.py --out "$OUT/decode-$DATE.md" ;;
    overlap) stage overlap python3 bench/launch_overlap.py --out "$OUT/launch-overlap-$DATE.md" ;;
    latency)
      stage prewarm build/topkattn prewarm --model llama-3.1-8b --arch sm_90
      stage latency python3 bench/plan_latency.py --cache-dir "$TOPKATTN_CACHE_DIR" --out "$OUT/plan-latency-$DATE.md"
      ;;
    run) stage run-llama build/topkattn run --model llama-3.1-8b; stage run-deepseek build/topkattn run --model deepseek-v3.2 ;;
    profile) stage profile profile ;;
    checks-*)  # checks-A,B,C: the whole GPU suite and both sanitizers with every named macro on at once
      # (one correctness run for several macro-gated changes; then AB_TIMES_ONLY=1 ab-A ab-B ... for times)
      TOPKATTN_KERNEL_DEFINES=${what#checks-} stage tests-macros sharded_tests
      TOPKATTN_KERNEL_DEFINES=${what#checks-} sanitize_stages -macros
      ;;
    ab-*) stage "$what" ab "${what#ab-}" ;;  # ab-TKA_SOME_MACRO (or ab-A,B for both): see ab() above
    abi-*) stage "$what" ab "${what#abi-}" indexer ;;  # abi-TKA_INDEXER_TMA
    stalls)  # where batch-1 decode's kernels wait (warp states, top stall lines): score, selection, attend
      stage stalls ncu --kernel-name regex:'decode_(score|select_(hist|classify|finish)|attend)' --launch-skip 5 --launch-count 5 \
        --section WarpStateStats --section SourceCounters --section SpeedOfLight --section Occupancy \
        python3 bench/kernel_times.py decode --batch 1 --seq-len 32768 --runs 2
      ;;
    stalls-select)  # the cluster path's pass at 32 x 128K (one CTA an SM, issuing a third of the time)
      stage stalls-select ncu --kernel-name regex:select_rows_cluster --launch-skip 2 --launch-count 1 \
        --section WarpStateStats --section SourceCounters --section SpeedOfLight --section Occupancy \
        python3 bench/kernel_times.py select --batch 32 --seq-len 131072 --unsorted --runs 3
      ;;
    stalls-mla)  # MLA sparse attention's tile of 64 heads at B = 64: shared-memory traffic and stalls
      stage stalls-mla ncu --kernel-name regex:sparse_attend --launch-skip 1 --launch-count 1 \
        --section WarpStateStats --section SourceCounters --section SpeedOfLight --section Occupancy \
        --section MemoryWorkloadAnalysis_Tables python3 bench/kernel_times.py mla --batch 64 --seq-len 32768 --runs 2
      ;;
    tune-indexer)
      stage tune-indexer build/topkattn tune --verbose --op indexer --model deepseek-v3.2 --seq-lens 32768,131072 \
        --batches 1,4,16,64 --db "$OUT/tuning-indexer-$DATE.json"
      ;;
    tune-sparse)  # MLA sparse attention (the indexer's attention part) and a Llama-shaped GQA one
      stage tune-sparse-mla build/topkattn tune --verbose --op sparse --model deepseek-v3.2 --seq-lens 32768 \
        --batches 1,16,64 --db "$OUT/tuning-sparse-$DATE.json"
      stage tune-sparse-gqa build/topkattn tune --verbose --op sparse --model llama-3.1-8b --select group --seq-lens 131072 \
        --batches 1,16 --db "$OUT/tuning-sparse-$DATE.json"
      ;;
    tune-decode)  # the preset's default lists (N 4K..128K x batch 1..64), then bench/decode.py's other rows
      stage tune-decode build/topkattn tune --model llama-3.1-8b --db "$OUT/tuning-decode-$DATE.json"
      for shape in "--head-dim 64 --group 4 --kv-heads 8" "--head-dim 256 --group 4 --kv-heads 8" \
        "--model llama-3.1-8b --page-size 64"; do
        # shellcheck disable=SC2086  # the shape is several flags
        stage "tune-decode-${shape// /}" build/topkattn tune $shape --k 2048 --seq-lens 32768 --batches 8 \
          --db "$OUT/tuning-decode-$DATE.json"
      done
      ;;
    bench-decode-tuned)  # after tune-decode: plans from that database beside the heuristic's
      stage bench-decode-tuned python3 bench/decode.py --tuning-db "$OUT/tuning-decode-$DATE.json" \
        --out "$OUT/decode-tuned-$DATE.md"
      ;;
    tune-fidelity)
      stage tune-fidelity build/topkattn tune --verbose --op fidelity --model llama-3.1-8b --seq-lens 32768,131072 \
        --batches 1,8 --db "$OUT/tuning-fidelity-$DATE.json"
      ;;
    tune-select)
      stage tune-select build/topkattn tune --verbose --op select --dtype fp32 -k 2048 --seq-lens 131072 \
        --batches 1,32,256,2048 --db "$OUT/tuning-select-$DATE.json"
      ;;
    bench-select-tuned)
      TOPKATTN_TUNING_DB="$OUT/tuning-select-$DATE.json" stage bench-select-tuned python3 bench/select.py \
        --out "$OUT/select-tuned-$DATE.md"
      ;;
    probe-*)  # probe-sort_cost: bench/probes/NAME.cu built with the machine's nvcc, then run
      stage "$what" probe "${what#probe-}"
      ;;
    pack-cache) stage pack-cache tar czf "$RESULTS/cache.tgz" -C "$TOPKATTN_CACHE_DIR" . ;;  # a file of its own
    *) echo "unknown stage $what" >&2; exit 2 ;;
  esac
done
printf '%s\n' "${SUMMARY[@]}" | tee "$RESULTS/summary.txt"
tar czf "$RESULTS/results.tgz" -C "$OUT" .
