"""The SLURM launcher's jobs as a sweep sees them: their states from squeue where the cluster keeps no accounting, and
a job that ended without a result (cancelled, killed) reported once the sweep's other jobs have ended.

submitit learns a job's end from ``sacct`` only: without accounting (no slurmdbd, or slurmdbd down) it warns on every
poll and waits forever on a job that has left the queue. ``squeue`` answers on every cluster, and a job it no longer
lists has ended. The runs' own records say how each ended; the report is built from them.
"""
import logging
import subprocess
import time

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

log = logging.getLogger(__name__)
GONE = "NOT_IN_QUEUE"  # the state of a job squeue no longer lists: it ended (submitit counts any unknown state done)


class QueueWatcher(SlurmInfoWatcher):
    """sacct's job states, or squeue's when sacct fails; a job that squeue no longer lists has ended.

    The launcher waits on the jobs in order and stops at the first that ended without a result (submitit's
    UncompletedJobError, which ends the sweep with its report): such a job counts as done only once every job has
    ended, so that the report sees them all and no job is left running unwatched. A job with a result is done at once
    (submitit looks for its result file first).
    """

    sacct_failed = False  # said once per sweep (one watcher), not on every poll

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        ended = super().is_done
        # Of the jobs it has states for: submitit also registers a job array's own id, which sacct never lists.
        return ended(job_id, mode) and all(ended(other, "cache") for other in self._registered
                                           if other in self._info_dict)

    def update(self) -> None:
        waiting = self._registered - self._finished
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        info = self._sacct(command)
        if info is None:
            info = _squeue(waiting)
        if info is not None:
            self._info_dict.update(info)
        self._last_status_check = time.time()
        self._finished |= {job_id for job_id in waiting if self.is_done(job_id, mode="cache")}

    def _sacct(self, command: list[str]) -> dict[str, dict[str, str]] | None:
        try:
            out = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            if not self.sacct_failed:
                reason = getattr(e, "stderr", None) or str(e)
                reason = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
                log.info("job states from squeue: sacct failed (%s)", reason.strip().splitlines()[0])
                self.sacct_failed = True
            return None
        return self.read_info(out)


def _squeue(job_ids: set[str]) -> dict[str, dict[str, str]] | None:
    """Each job's state as squeue lists it (``GONE`` where it does not); None when squeue does not answer."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T",
                              f"--jobs={','.join(sorted({j.split('_')[0] for j in job_ids}))}"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        stderr = getattr(e, "stderr", "") or ""
        if "Invalid job id" not in stderr:  # squeue's answer when none of the jobs is known any more
            log.warning("squeue failed, job states unknown for now: %s", stderr.strip() or e)
            return None
        out = ""
    listed = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    return {job_id: {"JobID": job_id, "State": listed.get(job_id, GONE)} for job_id in job_ids}


def use_queue_states(poll_s: float) -> None:
    """Make the SLURM launcher's jobs use ``QueueWatcher`` (in the sweep's own process, before it submits), looking at
    their states at most ``poll_s`` seconds apart (submitit's own watcher waits up to a minute)."""
    SlurmJob.watcher = QueueWatcher(delay_s=poll_s)
