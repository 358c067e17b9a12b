"""``harness provision --check --diff`` on a real (loopback) lab host: Ansible in check mode.

One sshd "lab host" on 127.0.0.9 (tests/integration/_sshd.py; its own port, keys and a temp
lab_dir), never provisioned before. site.yml runs in check mode with diffs: the command must
report the kubelet config it would write (the profile, the host drop-in, the effective config)
as a diff, and change nothing: no file under the host's lab_dir, no daemon started (containerd,
kubelet), no cgroup root created. No shared daemon is used (check mode starts none).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration._sshd import LoopbackLab

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "playbooks" / "examples" / "profiles" / "loopback.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _procs_under(base: Path) -> list[str]:
    """Command lines naming this test's folders (a lab daemon would; other work's would not)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if str(base) in cmd and "sshd" not in cmd and "pytest" not in cmd:
                    out.append(cmd)
    return out


def test_check_diff_shows_the_kubelet_config_and_changes_nothing(tmp_path: Path) -> None:
    from harness.cluster.build import build_for

    b = build_for("1.33.4")
    if not b.complete(("kubelet",)):
        pytest.fail("kubelet 1.33.4 is not built: run `harness cluster build --version 1.33.4` first")
    lab = LoopbackLab.start(tmp_path / "lab", [("lab-check", "127.0.0.9")])
    try:
        state = tmp_path / "state"
        inv = lab.inventory(
            tmp_path / "lab.yaml",
            defaults_vars={
                "lab_dir": str(state / "{{ inventory_hostname }}"),
                "lab_run_dir": str(tmp_path / "run" / "{{ inventory_hostname }}"),
                "kubelet_profile": str(PROFILE),
                "kubelet_binary_src": str(b.binary("kubelet")),
                "kubelet_cgroup_root": "/lab-check-nightly",
                "kubelet_healthz_port": 10648,
                "kubelet_port": 10650,
            },
        )
        r = subprocess.run(
            [sys.executable, "-m", "harness", "provision", str(inv), "--check", "--diff", "-q",
             "--results", str(tmp_path / "results")],
            cwd=REPO, capture_output=True, text=True, timeout=280,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert "check mode: nothing was changed" in out
        cfg = str(state / "lab-check")
        # the kubelet config diff: the profile verbatim, the drop-in with this host's settings
        assert f"+++ {cfg}" in out and "config.yaml" in out, out
        for line in PROFILE.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert f"+{line}" in out, line
        assert '+  "cgroupRoot": "/lab-check-nightly"' in out or "/lab-check-nightly" in out
        for d in (state, tmp_path / "run"):  # nothing written on the host
            assert not d.exists() or not any(d.rglob("*")), sorted(d.rglob("*"))
        assert not Path("/sys/fs/cgroup/memory/lab-check-nightly").exists()
        assert _procs_under(tmp_path) == []  # no containerd, no kubelet started for the host
    finally:
        lab.stop()
