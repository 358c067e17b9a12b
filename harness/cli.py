"""``harness``: thin commands over the library.

Exit codes, the same for every command (harness/errors.py): 0 success / every verdict matches;
1 a verdict mismatch or a change found; 2 bad input or usage; 3 the host or lab failed;
4 an internal error (one line, the traceback saved to a file); 5 a sweep that is inconclusive;
130 interrupted; 141 the reader
closed the output (``| head``), the shell's code for SIGPIPE, with nothing printed.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from harness import __version__
from harness.errors import EXIT_INTERRUPTED, HarnessError, exit_code, save_traceback

EXIT_CODES_HELP = """\b
Exit codes (every command):
  0    success: every verdict matches, no change found
  1    a verdict mismatch, or compare found a change
  2    bad input or usage
  3    the host or lab failed (daemon, SSH, build, a kubelet that will not start)
  4    internal error (one line; the traceback is saved under the run or a temp dir)
  5    inconclusive (sweep): the trials locate no boundary to compare with the model
  130  interrupted
  141  its output was closed by the reader (a pipe into head), as for SIGPIPE
"""


def report_error(exc: BaseException) -> int:
    """Print one line for an error that ends a command; its exit code."""
    code = exit_code(exc)
    if code == EXIT_INTERRUPTED:
        click.echo("harness: interrupted", err=True)
    elif isinstance(exc, HarnessError):
        click.echo(f"harness: error: {exc}", err=True)
    else:
        try:
            where = f"traceback in {save_traceback(exc)}"
        except OSError as err:  # pragma: no cover - nowhere to write
            where = f"traceback not saved: {err}"
        line = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(f"harness: internal error: {type(exc).__name__}: {line} ({where})", err=True)
    return code


class _Group(click.Group):
    """The harness's group: a command's module is imported when the command is used or listed
    (``--help``), not at start-up: ``runs list`` needs neither pandas nor the model or the
    Kubernetes client (see :data:`_LAZY`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            for cmd in _load(cmd_name):
                self.add_command(cmd)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own: usage errors exit 2, ctx.exit(n) exits n
        except BrokenPipeError:
            ctx.exit(_reader_gone())
        except (Exception, KeyboardInterrupt) as exc:
            ctx.exit(report_error(exc))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="harness")
def cli() -> None:
    """Stress-test how the kubelet and the Linux kernel protect node memory."""


EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def _reader_gone() -> int:
    """stdout's reader closed it (``harness ... | head -1``): no traceback, and no second
    BrokenPipeError when Python flushes stdout at exit (Python docs, signal: "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor
        pass
    return EXIT_PIPE


def main() -> None:
    try:
        cli(standalone_mode=True)
    except (Exception, KeyboardInterrupt) as exc:  # pragma: no cover - outside a command (options)
        sys.exit(report_error(exc))


# each command's name -> (its module, the click commands that module defines). A command's module
# (and the heavy libraries it brings: pandas/pyarrow, the model, the Kubernetes client, paramiko)
# is imported only when the command runs or help lists it (CLI start-up; `runs list` loads none
# of them). `runs show` and `runs prune` join the `runs` group when harness.commands.runs loads.
_LAZY: dict[str, tuple[str, tuple[str, ...]]] = {
    "doctor": ("harness.commands.doctor", ("doctor_cmd",)),
    "model": ("harness.commands.model", ("model_group",)),
    "run": ("harness.commands.run", ("run_cmd", "cleanup_cmd")),
    "cleanup": ("harness.commands.run", ("run_cmd", "cleanup_cmd")),
    "provision": ("harness.commands.provision", ("provision_cmd",)),
    "report": ("harness.commands.report", ("report_cmd", "compare_cmd")),
    "compare": ("harness.commands.report", ("report_cmd", "compare_cmd")),
    "runs": ("harness.commands.runs", ("runs_group",)),
    "sweep": ("harness.commands.sweep", ("sweep_cmd",)),
    "cluster": ("harness.commands.cluster", ("cluster_group",)),
    "upgrade-check": ("harness.commands.upgrade", ("upgrade_cmd",)),
    "export": ("harness.commands.export", ("export_cmd",)),
    "trend": ("harness.commands.trend", ("trend_cmd",)),
    "lab": ("harness.commands.lab", ("lab_group",)),
    "fuzz": ("harness.commands.fuzz", ("fuzz_cmd",)),
}


def _load(name: str) -> list[click.Command]:
    """The commands of ``name``'s module (:data:`_LAZY`), importing it."""
    module, attrs = _LAZY[name]
    mod = importlib.import_module(module)
    return [getattr(mod, a) for a in attrs]
