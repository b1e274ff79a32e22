"""The head of every results file: which command, on which commit and machine, with which torch, when.

    python benchmarks/header.py COMMAND...      # prints it, each line starting with '# '

Imports no torch (``importlib.metadata`` gives versions), so a shell script can call it cheaply.
"""
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _out(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    if os.environ.get("ABLATE_COMMIT"):  # a copy without .git, as the GPU node gets (docs/gpu.md): what it came from
        return f"{os.environ['ABLATE_COMMIT']} (from ABLATE_COMMIT)"
    sha = _out("git", "rev-parse", "--short=12", "HEAD")
    if not sha:
        return "unknown (no git checkout)"
    return sha + (" + uncommitted changes" if _out("git", "status", "--porcelain", "--untracked-files=no") else "")


def gpus() -> str:
    """Each GPU's name, memory and driver, from nvidia-smi; 'none' without one."""
    rows = _out("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
    return "; ".join(f"{name} ({mem.strip()}, driver {driver.strip()})"
                     for name, mem, driver in (r.split(",") for r in rows.splitlines())) or "none"


def cpu() -> str:
    """The CPU model, the cores this process may use, and whether it has AVX-512 (CPU speed differs by 2x or more)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    avx = "AVX-512" if " avx512f" in info else "AVX2, no AVX-512" if " avx2" in info else "no AVX2"
    if os.environ.get("ATEN_CPU_CAPABILITY"):  # torch's kernels held below what the CPU has
        avx += f"; torch's kernels held to {os.environ['ATEN_CPU_CAPABILITY']} by ATEN_CPU_CAPABILITY"
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{model}, {cores} cores ({avx}){load}"


def version(*packages: str) -> str:
    """The first installed package's version (DALI's name says its CUDA major)."""
    for package in packages:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return "not installed"


def header(command: str) -> str:
    lines = [f"command: {command}", f"commit: {commit()}", f"GPU: {gpus()}", f"CPU: {cpu()}",
             f"python {platform.python_version()}, torch {version('torch')}, timm {version('timm')}, "
             f"DALI {version('nvidia-dali-cuda130', 'nvidia-dali-cuda120')}",
             f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}"]
    return "".join(f"# {line}\n" for line in lines)


def timed(command: list[str], cwd: Path) -> float:
    """Wall seconds of ``command``, which must succeed (else the benchmark ends, with its stderr)."""
    tic = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - tic


def write_results(out: Path, script: str, argv: list[str] | None, lines: list[str]) -> None:
    """``out``: the header of ``python benchmarks/<script> ARGS`` (``argv``, or this process's), then ``lines``;
    printed too."""
    command = shlex.join(["python", f"benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header(command) + "".join(line + "\n" for line in lines))
    print(out.read_text(), end="")


if __name__ == "__main__":
    sys.stdout.write(header(" ".join(sys.argv[1:])))
