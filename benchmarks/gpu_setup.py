"""gpu.sh's set-up: install from a wheelhouse only what this Python lacks of benchmarks/gpu-requirements.txt, and
say what it kept.

    python benchmarks/gpu_setup.py [--wheelhouse DIR]         # gpu.sh runs it with the Python it uses

pip decides, offline and for the listed packages alone (``--no-index --no-deps``): a requirement this Python meets
is kept, any other is installed from DIR, and a package outside the list is never touched (a scipy rebuilt against
another numpy could break the node's stack). ``--isolated`` keeps this machine's pip settings out of it. Without
DIR pip only checks (``--dry-run``). Prints one line per requirement (its range, the version found, the version
now, and whether it was kept, installed or replaced) and the time taken; a requirement left unmet ends it with
pip's complaint and a one-line error.
"""
import argparse
import importlib
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "gpu-requirements.txt"


def requirements(path: Path = REQUIREMENTS) -> dict[str, str]:
    """Each requirement's name and range, in the file's order (``pytest>=8  # ...`` gives ``"pytest": ">=8"``, and
    ``tqdm`` gives ``"tqdm": ""``)."""
    wanted = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.match(r"[A-Za-z0-9._-]+", line).group(0)
            wanted[name] = line[len(name):].strip()
    return wanted


def installed(names: list[str]) -> dict[str, str | None]:
    """The version of each package this Python has, None where it has none."""
    importlib.invalidate_caches()  # pip may just have added some
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def action(before: str | None, after: str | None, installing: bool) -> str:
    """What became of one package: kept, installed or replaced; found or missing where pip only checked (it names
    the first requirement not met, so a version found is not yet known to be in range)."""
    if after is None:
        return "missing"
    if not installing:
        return "found"
    if before is None:
        return "installed"
    return "kept" if before == after else "replaced"


def pip_command(wheelhouse: str | None) -> list[str]:
    source = ["--find-links", wheelhouse] if wheelhouse else ["--dry-run"]
    return [sys.executable, "-m", "pip", "--isolated", "install", "-q", "--no-index", "--no-deps", *source,
            "--disable-pip-version-check", "--root-user-action=ignore", "-r", str(REQUIREMENTS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheelhouse", help="the folder of wheels (benchmarks/wheelhouse.sh); without it, check only")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    wanted = requirements()
    before = installed(list(wanted))
    command = pip_command(args.wheelhouse)
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.stdout.strip():  # -q: only what went wrong
        print(done.stdout.rstrip())
    after = installed(list(wanted))
    actions = {name: action(before[name], after[name], installing=bool(args.wheelhouse)) for name in wanted}
    print(f"# {'package':<24} {'wants':<12} {'found':<10} {'now':<10} action")
    for name, spec in wanted.items():
        print(f"{name:<26} {spec or 'any':<12} {before[name] or '-':<10} {after[name] or '-':<10} {actions[name]}")
    kinds = ("kept", "installed", "replaced", "missing") if args.wheelhouse else ("found", "missing")
    counts = ", ".join(f"{sum(a == kind for a in actions.values())} {kind}" for kind in kinds)
    print(f"# set-up: {counts}; {time.perf_counter() - start:.1f} s"
          + ("" if args.wheelhouse else " (no wheelhouse: pip checked the ranges, installing nothing)"))
    if done.returncode:
        errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR:")] or ["pip failed"]
        source = args.wheelhouse or "no wheelhouse (--wheelhouse DIR)"
        print(f"error: benchmarks/gpu-requirements.txt not met from {source}: {errors[-1]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
