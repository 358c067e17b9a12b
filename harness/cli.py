"""``harness``: thin commands over the library.

Exit codes, the same for every command (harness/errors.py): 0 success / every verdict matches;
1 a verdict mismatch or a change found; 2 bad input or usage; 3 the host or lab failed;
4 an internal error (one line, the traceback saved to a file); 5 a sweep that is inconclusive;
130 interrupted; 141 the reader
closed the output (``| head``), the shell's code for SIGPIPE, with nothing printed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

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
            for cmd in _LAZY[cmd_name]():
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


# each command's name -> a loader returning the commands of its module (imported on first use).
# Every import in these loaders is lazy: a command's module (and the heavy libraries it brings:
# pandas/pyarrow, the model, the Kubernetes client, paramiko) loads only when the command runs
# or help lists it (CLI start-up; `runs list` loads none of them).


def _doctor() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.doctor import doctor_cmd

    return [doctor_cmd]


def _model() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.model import model_group

    return [model_group]


def _run() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.run import cleanup_cmd, run_cmd

    return [run_cmd, cleanup_cmd]


def _provision() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.provision import provision_cmd

    return [provision_cmd]


def _report() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.report import compare_cmd, report_cmd

    return [report_cmd, compare_cmd]


def _runs() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.report import runs_group
    from harness.commands.runs import runs_prune_cmd, runs_show_cmd

    runs_group.add_command(runs_show_cmd)
    runs_group.add_command(runs_prune_cmd)
    return [runs_group]


def _sweep() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.sweep import sweep_cmd

    return [sweep_cmd]


def _cluster() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.cluster import cluster_group

    return [cluster_group]


def _upgrade() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.upgrade import upgrade_cmd

    return [upgrade_cmd]


def _export() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.export import export_cmd

    return [export_cmd]


def _trend() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.trend import trend_cmd

    return [trend_cmd]


def _lab() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.lab import lab_group

    return [lab_group]


def _fuzz() -> list[click.Command]:
    # lazy: the command's module loads only when it is used (CLI start-up)
    from harness.commands.fuzz import fuzz_cmd

    return [fuzz_cmd]


_LAZY: dict[str, Callable[[], list[click.Command]]] = {
    "doctor": _doctor,
    "model": _model,
    "run": _run,
    "cleanup": _run,
    "provision": _provision,
    "report": _report,
    "compare": _report,
    "runs": _runs,
    "sweep": _sweep,
    "cluster": _cluster,
    "upgrade-check": _upgrade,
    "export": _export,
    "trend": _trend,
    "lab": _lab,
    "fuzz": _fuzz,
}
