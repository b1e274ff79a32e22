"""The one error type users see for bad input: raised before any work starts."""


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the allowed values."""
