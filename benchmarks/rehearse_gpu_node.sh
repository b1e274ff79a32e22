#!/usr/bin/env bash
# A rehearsal of bash benchmarks/gpu.sh on a stand-in for the GPU node, on this machine's CPU (docs/gpu.md):
#
#   bash benchmarks/rehearse_gpu_node.sh [DIR]        # DIR: default /work/rehearse; needs the package index
#
# Not a CI test: it downloads torch (about 4 GB with its CUDA libraries, the build PyPI has). In DIR it makes
#   venv/    Python 3.12 (pyenv's, else uv's) with the node's torch 2.11.0 and torchvision 0.26.0, and the packages
#            of the device tool's KINDS.md that the check touches, at the node's versions where KINDS.md gives them;
#            the Hydra packages the node lacks are taken out again, so that each rehearsal starts where the node does
#   gpu/     what a device call carries (docs/gpu.md, the same commands): repo/, the committed tree at HEAD without
#            .git and reports' PNGs, and whl/, the wheelhouse (benchmarks/wheelhouse.sh; its listing: whl.txt)
# then runs gpu.sh --cpu --wheelhouse from gpu/repo with no network (unshare -n), writing out/, and last the set-up
# alone over a filelock older than its range (out/setup-old-filelock.txt). Fails where either fails.
set -euo pipefail
dir=${1:-/work/rehearse}
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"
venv="$dir/venv" python="$dir/venv/bin/python"

if [ ! -x "$python" ]; then
    python312=$(ls -d /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1 || true)
    if [ -n "$python312" ]; then
        "$python312" -m venv "$venv"
    else
        python3 -m pip install -q uv && python3 -m uv venv --seed -p 3.12 "$venv"
    fi
fi
# The node's image, as far as the check reaches (KINDS.md: versions where it gives them, else the newest).
"$python" -m pip install -q torch==2.11.0 torchvision==0.26.0 numpy==2.5.2 huggingface-hub==1.33.0 \
    safetensors==0.8.0 timm scipy scikit-learn pandas matplotlib pytest pytest-xdist execnet filelock tqdm PyYAML \
    joblib packaging pygments pluggy iniconfig cloudpickle typing-extensions hypothesis pytest-benchmark pytest-cov \
    pytest-mock pytest-timeout anyio
"$python" -m pip uninstall -q -y hydra-core omegaconf antlr4-python3-runtime hydra-submitit-launcher \
    hydra-joblib-launcher submitit

# As docs/gpu.md makes it: the commit's tree and the wheelhouse, in one folder.
commit=$(git -C "$repo" rev-parse --short=12 HEAD)
rm -rf "$dir/gpu" "$dir/out" && mkdir -p "$dir/gpu/repo"
git -C "$repo" archive HEAD | tar -x -C "$dir/gpu/repo" --exclude='reports/*.png'
bash "$dir/gpu/repo/benchmarks/wheelhouse.sh" "$dir/gpu/whl" "$dir/whl.txt" > /dev/null
echo "wheelhouse: $(tail -n 1 "$dir/whl.txt"); gpu/: $(du -sb "$dir/gpu" | cut -f1) bytes (a call carries 64 MiB)"

cd "$dir/gpu/repo"
status=0
unshare -n -- env -u PYTHONPATH ABLATE_COMMIT="$commit" \
    bash benchmarks/gpu.sh "$dir/out" --cpu --wheelhouse ../whl --python "$python" || status=$?

# A node whose copy is older than the range: filelock before 3.30, then the set-up alone, offline.
"$python" -m pip install -q "filelock<3.30"
trial="$dir/out/setup-old-filelock.txt"
ABLATE_COMMIT="$commit" "$python" benchmarks/header.py \
    "python benchmarks/gpu_setup.py --wheelhouse ../whl  (after pip install 'filelock<3.30')" > "$trial"
unshare -n -- env -u PYTHONPATH "$python" benchmarks/gpu_setup.py --wheelhouse ../whl >> "$trial" || status=$?
grep -E '^filelock|^# set-up' "$trial"
exit $status
