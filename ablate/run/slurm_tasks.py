"""SLURM's tasks as torchrun's processes: one translation of a SLURM step's environment into torchrun's variables.

Torch-free, so the command line can run it before anything heavy loads.
"""
import os
import re
from collections.abc import MutableMapping

# Where SLURM_JOB_ID picks the rendezvous port: above the usual services, below Linux's ephemeral ports.
PORTS = range(20000, 32000)


def adopt_slurm_tasks(environ: MutableMapping[str, str] = os.environ) -> None:
    """Give the tasks of a SLURM step (``srun``, or submitit's ``tasks_per_node``) torchrun's variables.

    Only when torchrun's are absent and the step has several tasks: a batch script's own process (no step) or a
    one-task step trains alone. The rendezvous is the step's first host, on a port picked by the job's id, so every
    task finds it without talking to the others, and a requeued job (same id) finds it again.
    """
    tasks = int(environ.get("SLURM_STEP_NUM_TASKS", "1"))
    if "WORLD_SIZE" in environ or tasks < 2:
        return
    environ.update(RANK=environ["SLURM_PROCID"], WORLD_SIZE=str(tasks), LOCAL_RANK=environ["SLURM_LOCALID"],
                   LOCAL_WORLD_SIZE=str(tasks // int(environ.get("SLURM_STEP_NUM_NODES", "1"))))
    environ.setdefault("MASTER_ADDR", first_host(environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"]))
    environ.setdefault("MASTER_PORT", str(PORTS[int(environ["SLURM_JOB_ID"]) % len(PORTS)]))


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list: ``gpu[07-12,15],cpu1`` → ``gpu07``."""
    m = re.match(r"([^,\[]+)(?:\[([^-,\]]+))?", nodelist)
    if m is None:
        raise ValueError(f"not a SLURM host list: {nodelist!r}")
    return m.group(1) + (m.group(2) or "")
