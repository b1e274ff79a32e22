"""data.loader=dali: NVIDIA DALI pipelines for class-folder trees (imported only when that loader is asked for)."""
from importlib.util import find_spec


def dali_installed() -> bool:
    try:
        return find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:  # no `nvidia` namespace package at all
        return False
