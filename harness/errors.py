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


class InputErrors(InputError):
    """Several problems in one file: every one is listed, one line each naming file and field."""

    def __init__(self, file: str | None, errors: list[tuple[str | None, str]]) -> None:
        assert errors
        self.errors = errors
        field, reason = errors[0]
        super().__init__(file, field, reason)
        where = file or "<input>"
        lines = [f"{where}: {f}: {r}" if f else f"{where}: {r}" for f, r in errors]
        if len(lines) > 1:
            lines.insert(0, f"{where}: {len(lines)} errors")
        self.args = ("\n".join(lines),)


class HostError(HarnessError):
    """The host lacks something the harness needs (daemon, capability, file)."""
