#!/usr/bin/env bash
# One command proves the GPU side: the `gpu` tests, the step benchmark (ours vs timm, eager and compiled), each
# pooling kernel at pool 3/5/7/9 and every Table 5 row, the loaders end to end on a generated JPEG tree, the
# fraction of time the GPU waits, and the projected Table 5 GPU-hours on ImageNet-100.
#
#   bash benchmarks/gpu.sh OUTDIR [--cpu] [--wheelhouse DIR] [--python PYTHON]
#
# Offline: torch and torchvision must be installed in PYTHON (--python, or ABLATE_PYTHON; default python3, which on
# the GPU node is the one holding torch). The rest of benchmarks/gpu-requirements.txt that PYTHON lacks comes from a
# wheelhouse (benchmarks/wheelhouse.sh; --wheelhouse DIR or ABLATE_WHEELHOUSE=DIR); what it has in range is kept
# (benchmarks/gpu_setup.py). Each part runs under its own time limit (the seconds in `parts` below: 460 s in all on
# one H100/H200), and a part that runs out of time stops on SIGTERM and still writes what it measured.
# OUTDIR gets at most 8 files: summary.txt, setup.txt and one per part, each headed by its command, commit, GPU, driver,
# torch version and date. --cpu (automatic without CUDA) runs the same parts at tiny sizes: the test suite's check
# (tests/test_benchmarks.py) that the command still works.
set -u -o pipefail
usage="usage: bash benchmarks/gpu.sh OUTDIR [--cpu] [--wheelhouse DIR] [--python PYTHON]"
command="bash benchmarks/gpu.sh $*"
out="" cpu=0 wheelhouse="${ABLATE_WHEELHOUSE:-}" python="${ABLATE_PYTHON:-python3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) cpu=1 ;;
        --wheelhouse) wheelhouse="${2:?$usage}"; shift ;;
        --python) python="${2:?$usage}"; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "$usage" >&2; exit 2 ;;
        *) [ -z "$out" ] || { echo "$usage" >&2; exit 2; }; out="$1" ;;
    esac
    shift
done
[ -n "$out" ] || { echo "$usage" >&2; exit 2; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
# Paths given relative to where the command was started, which the cd below leaves.
case "$wheelhouse" in ""|/*) ;; *) wheelhouse="$PWD/$wheelhouse" ;; esac
case "$python" in /*) ;; */*) python="$PWD/$python" ;; esac
[ -z "$wheelhouse" ] || [ -d "$wheelhouse" ] || { echo "no wheelhouse folder at $wheelhouse" >&2; exit 1; }
cd "$repo" || exit 1
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

setup_log="$out/setup.txt"
"$python" benchmarks/header.py "$command" > "$setup_log" || { echo "no Python at '$python' (--python)" >&2; exit 1; }
setup_start=$(date +%s)
"$python" benchmarks/gpu_setup.py ${wheelhouse:+--wheelhouse "$wheelhouse"} >> "$setup_log" 2>&1 ||
    { echo "$(tail -n 1 "$setup_log") (see $setup_log)" >&2; exit 1; }
setup_seconds=$(( $(date +%s) - setup_start ))
if [ "$cpu" = 0 ] && ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>>"$setup_log"; then
    echo "no CUDA device visible: running the CPU check (--cpu)" | tee -a "$setup_log" >&2
    cpu=1
fi

# The modules holding `gpu` tests; the others import the report's packages, which the wheelhouse leaves out.
gpu_tests="tests/test_gpu.py tests/test_store.py tests/test_augment.py"
# In one process (-n 0, not pyproject's -n auto): the tests share one GPU and their limit below was set for one
# process; with --cpu this runs inside the test suite, whose workers already take every core.
# name, seconds, command: the GPU run, then the same parts at tiny sizes for --cpu.
if [ "$cpu" = 0 ]; then
    parts=(
        "tests 100 $python -m pytest -q -rs -p no:cacheprovider -n 0 -m gpu $gpu_tests"
        "step 150 $python benchmarks/throughput.py --sections step"
        "kernels 90 $python benchmarks/throughput.py --sections pooling,rows --no-compile --steps 5"
        "loader 120 $python benchmarks/loader.py --images 6144"
    )
else
    # Limits with room for a CPU shared with other jobs: at a load of 14 on 2 cores the loader outran 180 s.
    # PoolFormer-XS: the same code paths as S12, at a third of the CPU time.
    small="--model xs --img-size 32 --batch 2 --steps 1"
    tiny="$small --rounds 1 --no-compile --device cpu --threads 1"
    parts=(
        "tests 120 $python -m pytest -q -rs -p no:cacheprovider -n 0 -m gpu $gpu_tests"
        "step 120 $python benchmarks/throughput.py --sections step $tiny"
        "kernels 180 $python benchmarks/throughput.py --sections pooling,rows --rows baseline,pool9 $tiny"
        "loader 300 $python benchmarks/loader.py $small --images 20 --workers 0 --original-only --cpu"
    )
fi

summary="$out/summary.txt"
"$python" benchmarks/header.py "$command" > "$summary.part"
printf '%-8s %-10s %6s  %s\n' part status seconds file >> "$summary.part"
printf '%-8s %-10s %6d  %s\n' setup ok "$setup_seconds" setup.txt >> "$summary.part"
failed=0
for part in "${parts[@]}"; do
    read -r name limit command <<< "$part"
    file="$out/$name.txt"
    "$python" benchmarks/header.py "$command  (limit ${limit} s)" > "$file"
    start=$(date +%s)
    # SIGTERM first: the benchmarks then report what they measured; SIGKILL 15 s later if that hangs.
    timeout -k 15 "$limit" $command >> "$file" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status="out of time" ; failed=1 ;;
        *) status="failed ($rc)" ; failed=1 ;;
    esac
    printf '%-8s %-10s %6d  %s\n' "$name" "$status" "$(( $(date +%s) - start ))" "$name.txt" >> "$summary.part"
    echo "$name: $status" >&2
done
{
    echo "# goals and projections, from the files above:"
    (cd "$out" && grep '^# goal:\|^# Table 5 on ImageNet-100' step.txt kernels.txt loader.txt)
    grep -h -E '^[0-9]+ (passed|skipped|failed)|(passed|skipped|failed|error).* in [0-9.]+s' "$out/tests.txt" |
        tail -n 1 | sed 's/^/# gpu tests: /'
} >> "$summary.part"
mv "$summary.part" "$summary"
cat "$summary"
exit $failed
