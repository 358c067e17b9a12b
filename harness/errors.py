"""Errors the harness reports to its user.

Every error a user can cause (bad YAML, missing daemon, host limitation) is a
:class:`HarnessError` with one clear line; the CLI prints it without a traceback
and exits with code 2.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error with a one-line explanation meant for the user."""


class InputError(HarnessError):
    """Bad input: names the file, the field and the reason."""

    def __init__(self, file: str | None, field: str | None, reason: str) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        where = file or "<input>"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {reason}")


class HostError(HarnessError):
    """The host lacks something the harness needs (daemon, capability, file)."""
