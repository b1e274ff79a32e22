#!/usr/bin/env bash
# The wheelhouse for bash benchmarks/gpu.sh --wheelhouse, built for the GPU node's Python (3.12, manylinux x86_64)
# on any machine with the package index: each "carried: V" package of benchmarks/gpu-requirements.txt at version V.
#
#   bash benchmarks/wheelhouse.sh DIR [RESULTS]      # RESULTS: default benchmarks/results/wheelhouse-cp312.txt
#
# DIR is emptied first.
# Pure-Python wheels fit any Python; pip download is told the node's anyway, so that a binary one added to the list
# comes for 3.12. A package PyPI has only as an sdist ("built") is made into a wheel here with pip wheel. RESULTS
# gets the command, commit and machine, then each wheel with its size, and the total (docs/gpu.md cites it).
set -euo pipefail
usage="usage: bash benchmarks/wheelhouse.sh DIR [RESULTS]"
dir=${1:?$usage}
results=${2:-}
# Paths given relative to where the command was started, which the cd below leaves.
rm -rf "$dir" && mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"
[ -z "$results" ] || results="$(cd "$(dirname "$results")" && pwd)/$(basename "$results")"
cd "$(dirname "$0")/.."
results=${results:-benchmarks/results/wheelhouse-cp312.txt}
python=${ABLATE_PYTHON:-python3}
start=$(date +%s)
# name==version of each carried package, and of those to build.
carried=$(sed -n 's/^\([A-Za-z0-9._-]*\).*# carried: \([^ ,]*\).*/\1==\2/p' benchmarks/gpu-requirements.txt)
built=$(sed -n 's/^\([A-Za-z0-9._-]*\).*# carried: \([^ ,]*\), built.*/\1==\2/p' benchmarks/gpu-requirements.txt)
# shellcheck disable=SC2046  # one word per requirement
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir" $(grep -v -x -F "$built" <<< "$carried")
# shellcheck disable=SC2086
"$python" -m pip wheel -q --no-deps -w "$dir" $built
count=$(find "$dir" -name '*.whl' | wc -l)
expected=$(wc -l <<< "$carried")
[ "$count" = "$expected" ] || { echo "expected $expected wheels in $dir, found $count" >&2; exit 1; }
bytes=$(cat "$dir"/*.whl | wc -c)
{
    "$python" benchmarks/header.py "bash benchmarks/wheelhouse.sh $*"
    echo "# The wheelhouse for bash benchmarks/gpu.sh --wheelhouse on the GPU node (Python 3.12, manylinux x86_64):"
    echo "# the \"carried\" lines of benchmarks/gpu-requirements.txt; what the node has in range stays as it is."
    printf '%-10s %s\n' bytes wheel
    (cd "$dir" && wc -c -- *.whl | grep -v ' total$' | sort -rn | awk '{printf "%-10s %s\n", $1, $2}')
    echo "total: $bytes bytes = $(awk "BEGIN {printf \"%.1f\", $bytes / 1e6}") MB (limit 10 MB) in $count wheels," \
        "built in $(( $(date +%s) - start )) s"
} > "$results"
cat "$results"
