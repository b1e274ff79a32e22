"""The errors users see for bad input, each one readable line; raised before any work starts where they can be."""


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the allowed values."""


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read; it is left in place for the user to inspect."""


class RunDirError(ConfigError):
    """A run directory holds another config's run, or a live process holds it; nothing in it was touched."""


class WriteError(OSError):
    """A run's file could not be written (e.g. a full disk); the message names the file, in one line."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class Interrupted(BaseException):
    """SIGTERM (a SLURM preemption, ``kill``): the run stops as on Ctrl-C, keeping its last epoch's checkpoint."""


class ReportError(Exception):
    """A report cannot be written where asked (e.g. it would replace a file it did not write)."""
