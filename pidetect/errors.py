"""Errors a user can act on, each carrying the process exit code ARCHITECTURE.md promises.

The CLI catches `PidetectError` and prints its message; anything else is a bug and keeps its traceback.
"""

EX_OK = 0
EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_OSFILE = 72  # a system file (a runtime library) is missing or unusable: installing helps, retrying does not
EX_CONFIG = 78


class PidetectError(Exception):
    exit_code = 1


class UsageError(PidetectError):
    """A bad command-line argument or input file named by the user."""

    exit_code = EX_USAGE


class ConfigError(PidetectError):
    """Configuration that cannot work; systemd must not restart-loop on it (RestartPreventExitStatus=78)."""

    exit_code = EX_CONFIG


class ModelError(ConfigError):
    """The model or its labels cannot be used as configured (also EX_CONFIG)."""


class UnavailableError(PidetectError):
    """A required component (inference backend, display) is not installed or not present."""

    exit_code = EX_UNAVAILABLE
