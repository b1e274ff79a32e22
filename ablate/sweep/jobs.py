"""A sweep's jobs and where each lives: deterministic directory names, and the job list Hydra will run.

A sweep directory is named by the sweep and its command-line overrides (seeds excluded, so adding
seeds reuses the finished ones); each job's subdirectory by its own overrides and seed. Re-running
the same command therefore finds every earlier run where it left it.
"""
import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from omegaconf import DictConfig, OmegaConf

from ablate.config import group_options

SWEEP_KEYS = ("+sweep", "sweep")
SEED = "seed"
MAX_NAME = 120  # bytes of one directory name (file systems allow 255; the path as a whole must stay usable)


def _key(override: str) -> str:
    return override.partition("=")[0]


def _clean(name: str) -> str:
    """A path component: no slashes, no brackets, no spaces."""
    name = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).replace(",", "-"), name)
    return name.replace("/", ".").replace(" ", "")


def _dirname(raw: str) -> str:
    """``raw`` as one directory name, one-to-one and at most MAX_NAME bytes.

    Where ``raw`` had to be flattened (``/a/x/y`` and ``/a/x.y`` both become ``.a.x.y``) or cut, a short hash of
    ``raw`` follows, so distinct override sets never share a directory.
    """
    name = _clean(raw) or "baseline"
    if name == raw and len(name.encode()) <= MAX_NAME:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    head = name.encode()[:MAX_NAME - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


def sweep_dirname(overrides: Sequence[str]) -> str:
    """``multirun/<sweep name>,<other overrides>``; seeds left out."""
    name = next((o.partition("=")[2] for o in overrides if _key(o) in SWEEP_KEYS), None)
    rest = sorted(o for o in overrides if _key(o).lstrip("+~") != SEED and _key(o) not in SWEEP_KEYS)
    return _dirname(",".join(([name] if name else []) + rest))


def job_dirname(overrides: Sequence[str]) -> str:
    """``<row>,<other overrides, sorted>/seed=N`` for one job of a sweep."""
    rows, rest, seed = [], [], "0"
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+~") == SEED:
            seed = value
        elif key.startswith("+sweep/"):  # a named sweep's row: its name says it all
            rows.append(value)
        elif key not in SWEEP_KEYS:
            rest.append(o)
    return f"{_dirname(','.join(rows + sorted(rest)))}/seed={seed}"


def register_resolvers() -> None:
    """The resolvers ``conf/config.yaml`` names its sweep and job directories with."""
    # Cached: each job re-composes its config, and the cache (copied from the sweep's) keeps the sweep's name.
    OmegaConf.register_new_resolver("ablate_sweep_dir", lambda o: sweep_dirname(list(o)), replace=True,
                                    use_cache=True)
    OmegaConf.register_new_resolver("ablate_job_dir", lambda o: job_dirname(list(o)), replace=True)


def job_overrides(config: DictConfig) -> list[list[str]]:
    """Every job's override list of the sweep ``config`` composes."""
    return expand_jobs(config.hydra.sweeper.get("params") or {}, config.hydra.overrides.task)


def expand_jobs(params: Mapping[str, Any], arguments: Sequence[str]) -> list[list[str]]:
    """Every job's override list, expanded as Hydra's basic sweeper expands them.

    The sweep file's ``params`` come first and the command line's ``arguments`` replace those of the same key;
    jobs are the Cartesian product of the sweeps, in order.
    """
    choices: dict[str, list[str]] = {}
    overrides = [f"{k}={v}" for k, v in params.items()] + list(arguments)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if isinstance(override.value(), Glob):
            values = override.value().filter(group_options(override.key_or_group))
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        choices[key] = [f"{key}={v}" for v in values]
    return [list(job) for job in itertools.product(*choices.values())]
