"""The errors users see for bad input, each one readable line; raised before any work starts where they can be."""
import signal


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

    @classmethod
    def on_signal(cls, signum: int, frame: object) -> None:
        """A signal handler: Python's default for SIGTERM just dies, leaving the record ``running``."""
        raise cls(signal.Signals(signum).name)


class RecordError(ValueError):
    """A run's results.json that cannot be read as a record: cut short, garbled, or a field of the wrong type; the
    message names the file (and the field) in one line."""


class ReportError(Exception):
    """A report cannot be written where asked (e.g. it would replace a file it did not write)."""


class UnreadableImageError(OSError):
    """An image file that PIL cannot decode; the message names the path in one line.

    Also when a DataLoader worker raised it: torch raises it again in the main process with the worker's traceback
    as its message, whose last line is the original one.
    """

    def __str__(self) -> str:
        text = super().__str__()
        marker = f"{type(self).__name__}: "
        last = next((line for line in reversed(text.splitlines()) if marker in line), None)
        return last.split(marker, 1)[1] if last is not None and text.startswith("Caught ") else text
