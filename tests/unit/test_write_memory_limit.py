"""``host.cgroups.write_memory_limit``: a systemd slice's limit goes through systemd as well."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness.host.cgroups import write_memory_limit


def _fake_systemctl(tmp_path: Path, rc: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    exe = bin_dir / "systemctl"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "refused" >&2\nexit {rc}\n')
    exe.chmod(0o755)
    return log


def test_a_slice_under_systemd_gets_its_unit_memorymax_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubelet's QoS update sets CPUWeight on kubepods.slice, and systemd then writes the unit's
    own MemoryMax back: the ceiling must be the unit's MemoryMax, not only the file."""
    log = _fake_systemctl(tmp_path, 0)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    f = tmp_path / "kubepods.slice" / "memory.max"
    f.parent.mkdir()
    f.write_text("2244567040\n")
    write_memory_limit(f, 2233622528, systemd=True)
    assert log.read_text().split() == ["set-property", "--runtime", "kubepods.slice", "MemoryMax=2233622528"]
    assert f.read_text() == "2233622528"
    # not a slice (the cgroupfs driver's kubepods), or no systemd: the file alone
    log.unlink()
    g = tmp_path / "kubepods" / "memory.limit_in_bytes"
    g.parent.mkdir()
    write_memory_limit(g, 3264475136, systemd=True)
    write_memory_limit(f, 1 << 30, systemd=False)
    assert not log.exists()
    assert g.read_text() == "3264475136" and f.read_text() == str(1 << 30)


def test_systemd_refusing_the_property_is_an_error_and_the_file_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_systemctl(tmp_path, 1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    f = tmp_path / "kubepods.slice" / "memory.max"
    f.parent.mkdir()
    f.write_text("2244567040\n")
    with pytest.raises(OSError) as exc:
        write_memory_limit(f, 2233622528, systemd=True)
    assert exc.value.errno == errno.EIO and "refused" in str(exc.value.strerror)
    assert f.read_text() == "2244567040\n"
