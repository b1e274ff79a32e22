"""The errors users see for bad input, each one readable line; raised before any work starts where they can be."""


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the allowed values."""


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read; it is left in place for the user to inspect."""
