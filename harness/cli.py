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

import click

from harness import __version__
from harness.commands.cluster import cluster_group
from harness.commands.doctor import doctor_cmd
from harness.commands.fuzz import fuzz_cmd
from harness.commands.lab import lab_group
from harness.commands.model import model_group
from harness.commands.nightly import register as register_nightly
from harness.commands.provision import provision_cmd
from harness.commands.report import compare_cmd, report_cmd, runs_group
from harness.commands.run import cleanup_cmd, run_cmd
from harness.commands.sweep import sweep_cmd
from harness.commands.upgrade import upgrade_cmd
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


def _register() -> None:
    cli.add_command(model_group)
    cli.add_command(run_cmd)
    cli.add_command(cleanup_cmd)
    cli.add_command(doctor_cmd)
    cli.add_command(provision_cmd)
    cli.add_command(report_cmd)
    cli.add_command(compare_cmd)
    cli.add_command(runs_group)
    cli.add_command(sweep_cmd)
    cli.add_command(cluster_group)
    cli.add_command(upgrade_cmd)
    register_nightly(cli, runs_group)
    cli.add_command(lab_group)
    cli.add_command(fuzz_cmd)


_register()
