"""One exit-code scheme for every command (harness/errors.py): a CI gate can trust it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harness import errors
from harness.cli import cli
from harness.errors import HarnessError, HostError, InputError


@pytest.fixture
def crash_cmd() -> Iterator[None]:
    @click.command("_crash")
    @click.argument("kind")
    def crash(kind: str) -> None:
        if kind == "internal":
            raise ZeroDivisionError("division by zero")
        if kind == "host":
            raise HostError("dockerd: not running")
        if kind == "input":
            raise InputError("suite.yaml", "scenarios[0].timeout", "invalid duration")
        if kind == "harness":
            raise HarnessError("no scenario for backend docker")
        if kind == "interrupt":
            raise KeyboardInterrupt
        raise click.exceptions.Exit(1)

    cli.add_command(crash)
    yield
    cli.commands.pop("_crash")
    errors.note_run_dir(None)


@pytest.mark.parametrize(
    ("kind", "code"),
    [("input", 2), ("harness", 2), ("host", 3), ("internal", 4), ("interrupt", 130), ("x", 1)],
)
def test_every_kind_of_ending_has_its_code(crash_cmd: None, kind: str, code: int) -> None:
    res = CliRunner().invoke(cli, ["_crash", kind])
    assert res.exit_code == code, res.output


def test_usage_error_is_2() -> None:
    assert CliRunner().invoke(cli, ["run", "--no-such-option"]).exit_code == 2


def test_internal_error_is_one_line_with_the_traceback_saved_in_the_run(
    crash_cmd: None, tmp_path: Path
) -> None:
    errors.note_run_dir(tmp_path)
    res = CliRunner().invoke(cli, ["_crash", "internal"])
    assert res.exit_code == 4
    lines = res.output.strip().splitlines()
    assert len(lines) == 1
    m = re.fullmatch(
        r"harness: internal error: ZeroDivisionError: division by zero \(traceback in (.+)\)", lines[0]
    )
    assert m, lines[0]
    saved = Path(m.group(1))
    assert saved.parent == tmp_path
    assert "Traceback" in saved.read_text() and "ZeroDivisionError" in saved.read_text()


def test_internal_error_without_a_run_saves_the_traceback_in_a_temp_dir(crash_cmd: None) -> None:
    errors.note_run_dir(None)
    res = CliRunner().invoke(cli, ["_crash", "internal"])
    saved = Path(res.output.strip().rsplit("traceback in ", 1)[1].rstrip(")"))
    assert saved.is_file() and "ZeroDivisionError" in saved.read_text()
    saved.unlink()
    saved.parent.rmdir()


def test_bad_pod_file_through_a_real_command_is_2(tmp_path: Path) -> None:
    p = tmp_path / "pod.yaml"
    p.write_bytes(b"apiVersion: v1\nkind: Pod\n# \xff\n")
    root = Path(__file__).resolve().parents[2]
    res = CliRunner().invoke(
        cli, ["model", "pod", str(root / "profiles/default.yaml"), str(p), "--memory-capacity", "16Gi"]
    )
    assert res.exit_code == 2
    assert res.output.strip() == f"harness: error: {p}: not UTF-8 text: byte 0xff at line 3 (offset 27)"


def test_help_documents_the_exit_codes() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    for line in (
        "0    success",
        "1    a verdict mismatch",
        "2    bad input",
        "3    the host or lab failed",
        "4    internal error",
        "130  interrupted",
    ):
        assert line in out


def test_a_reader_that_closes_the_output_is_not_an_internal_error() -> None:
    """`harness ... | head -1`: exit 141 (SIGPIPE's shell code), no traceback, no 'internal error'."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "model",
            "explain",
            "profiles/default.yaml",
            "--memory-capacity",
            "16Gi",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader is gone before the first write
    err = p.stderr.read().decode()
    assert p.wait() == 141, err
    assert "internal error" not in err and "Traceback" not in err
