#!/usr/bin/env bash
# The size of a fresh install: `bash benchmarks/install_size.sh [OUT]` makes a new venv, runs the README's first
# install command in it (`pip install .`) and writes the venv's size, and its largest packages, to OUT
# (default benchmarks/results/install-size.txt). Needs the package index, not a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/install-size.txt}
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q .
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
{
    echo "# command: bash benchmarks/install_size.sh   (python3 -m venv; pip install .)"
    echo "# commit: $(git rev-parse --short HEAD)   machine: $(uname -m), $(nproc) cores, $(python3 --version)   date: $(date -u +%F)"
    echo "# torch: $("$venv/bin/python" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
    echo "venv_total_mb $(du -sm "$venv" | cut -f1)"
    echo "# largest entries of site-packages (MB):"
    du -sm "$site"/* | sort -rn | head -12 | sed "s|$site/||"
} > "$out"
rm -rf "$(dirname "$venv")"
cat "$out"
