"""playbooks/ is ansible-lint clean (production profile, playbooks/.ansible-lint) and syntax-checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def test_ansible_lint_is_clean() -> None:
    exe = shutil.which("ansible-lint") or str(Path(sys.executable).with_name("ansible-lint"))
    r = subprocess.run([exe, "--nocolor"], cwd=PLAYBOOKS, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in r.stdout + r.stderr


@pytest.mark.parametrize("playbook", ["site.yml", "facts.yml", "harness.yml", "teardown.yml"])
def test_playbooks_syntax_check(playbook: str) -> None:
    exe = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
    r = subprocess.run(
        [exe, "--syntax-check", "-i", "localhost,", playbook],
        cwd=PLAYBOOKS,
        capture_output=True,
        text=True,
        timeout=120,
        env={"ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
