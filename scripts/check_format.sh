#!/usr/bin/env bash
# Fails when a tracked C, C++ or CUDA source differs from .clang-format's layout, and names it.
# One clang-format version (Debian 12's 14), since versions lay code out differently.
# Usage: scripts/check_format.sh          check (CTest's style.clang_format)
#        scripts/check_format.sh --fix    rewrite the files in place
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${CLANG_FORMAT:-clang-format-14}
command -v "$tool" > /dev/null || { echo "$tool not found (scripts/deps.sh installs it)" >&2; exit 2; }
# The tracked sources (safe.directory: a checkout owned by another user is still read); outside a
# git checkout, the source folders themselves.
if listed=$(git -c safe.directory='*' ls-files -- '*.c' '*.cpp' '*.h' '*.cuh' 2> /dev/null) && [ -n "$listed" ]; then
  mapfile -t files <<< "$listed"
else
  mapfile -t files < <(find autotune cache codegen common examples include python runtime templates tests tools \
    \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.cuh' \) 2> /dev/null | sort)
fi
[ ${#files[@]} -gt 0 ] || { echo "no sources found to check" >&2; exit 1; }
if [ "${1:-}" = --fix ]; then
  "$tool" -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$tool" --dry-run -Werror "$f" > /dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "not laid out as .clang-format says (scripts/check_format.sh --fix):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "${#files[@]} sources laid out as .clang-format says"
