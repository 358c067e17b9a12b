"""Errors the harness reports to its user, and the exit code of each.

Every error a user can cause (bad YAML, missing daemon, host limitation) is a
:class:`HarnessError` with one clear line; the CLI prints it without a traceback.
Exit codes, the same for every command (a CI gate reads them):

====  ==========================================================================
0     success: every verdict matches, no change found
1     a verdict mismatch, or ``compare`` found a change
2     bad input or usage (:class:`InputError`, a plain :class:`HarnessError`)
3     the host or lab failed (:class:`HostError`: a daemon, SSH, a build, a kubelet
      that will not start where it should)
4     an internal error: one line, the traceback saved to a file under the run
      (or under a temporary folder when no run exists)
5     inconclusive (``sweep``): the trials neither agree nor disagree with the model,
      e.g. mixed outcomes that locate no boundary; more repeats or trials decide
130   interrupted (Ctrl-C, SIGTERM)
====  ==========================================================================
"""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_INPUT = 2
EXIT_HOST = 3
EXIT_INTERNAL = 4
EXIT_INCONCLUSIVE = 5
EXIT_INTERRUPTED = 130

# The run in progress in this process, where an internal error's traceback is saved.
_run_dir: Path | None = None


class HarnessError(Exception):
    """An error with a one-line explanation meant for the user.

    ``code`` is the exit code it ends a command with (2: bad input or usage; subclasses and
    errors that report a child command's failure set their own).
    """

    code = 2


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
    """The host or lab failed or lacks something the harness needs (daemon, SSH, build, capability)."""

    code = 3


def exit_code(exc: BaseException) -> int:
    """The exit code of an error that ends a command (module docstring)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, HarnessError):
        return exc.code
    return EXIT_INTERNAL


def note_run_dir(path: Path | None) -> None:
    """The run this process is writing: an internal error's traceback goes there."""
    global _run_dir
    _run_dir = path


def save_traceback(exc: BaseException) -> Path:
    """Write the traceback of an internal error to ``<run>/crash-<pid>.txt`` (else a temp dir)."""
    text = "".join(traceback.format_exception(exc))
    folders = [_run_dir] if _run_dir is not None else []
    folders.append(Path(tempfile.gettempdir()))
    for folder in folders:
        try:
            if folder == Path(tempfile.gettempdir()):
                folder = Path(tempfile.mkdtemp(prefix="harness-crash-"))
            path = folder / f"crash-{os.getpid()}.txt"
            path.write_text(text)
            return path
        except OSError:
            continue
    raise OSError("no writable folder for the traceback")  # pragma: no cover
