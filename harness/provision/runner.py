"""Run a playbook of ``playbooks/`` through ansible-runner and turn its events into per-host reports.

Each run has its own private data directory (normally ``results/<run-id>/ansible/<playbook>/``):
the generated inventory, the extra variables and ansible-runner's artifacts (``artifacts/<ident>/``
with ``job_events/*.json`` and ``stdout``) stay there with the run's results.

A host's failure is reduced to one line: the failing task and its message (for a loop, the
failing item's message), or ``unreachable: ...``. A task that fails inside a ``block`` whose
``rescue`` recovers does not fail the host; the play recap decides.
"""

from __future__ import annotations

import contextlib
import difflib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import safe_load
from harness.errors import HarnessError, InputError
from harness.provision.inventory import PLAYBOOKS, Inventory, LabHost

Say = Callable[[str], None]


@dataclass
class HostReport:
    name: str
    status: str = "ok"  # ok | changed | failed | unreachable | not-run
    ok: int = 0
    changed: int = 0
    failed: int = 0
    rescued: int = 0
    skipped: int = 0
    error: str | None = None
    facts: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)  # debug msg {harness_report: {...}} of a role
    changed_tasks: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)  # --diff: "task: unified diff" of what changes

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok,
            "changed": self.changed,
            "failed": self.failed,
            "rescued": self.rescued,
            "skipped": self.skipped,
            "error": self.error,
            "changed_tasks": self.changed_tasks,
        }


@dataclass
class PlaybookResult:
    playbook: str
    status: str  # successful | failed | timeout | canceled
    rc: int
    hosts: dict[str, HostReport]
    private_dir: Path
    elapsed_s: float

    @property
    def failed_hosts(self) -> list[HostReport]:
        return [h for h in self.hosts.values() if h.status in ("failed", "unreachable")]


def resolve_playbook(name: str) -> Path:
    """``site.yml`` (a playbook of playbooks/) or a path; unknown names list what exists."""
    p = Path(name)
    if p.is_file():
        return p.resolve()
    q = PLAYBOOKS / name
    if q.is_file():
        return q
    have = sorted(x.name for x in PLAYBOOKS.glob("*.yml"))
    raise InputError(None, "--playbook", f"no playbook {name!r} (playbooks/ has {', '.join(have)})")


def playbook_roles(path: Path) -> set[str]:
    """Roles a playbook uses (``roles:`` entries and ``include_role`` names)."""
    roles: set[str] = set()
    try:
        plays = safe_load(path.read_text()) or []
    except yaml.YAMLError as exc:
        raise InputError(str(path), None, f"invalid YAML: {exc}") from None

    def tasks(items: Any) -> None:
        for t in items or []:
            if not isinstance(t, dict):
                continue
            for k in (
                "ansible.builtin.include_role",
                "include_role",
                "ansible.builtin.import_role",
                "import_role",
            ):
                if isinstance(t.get(k), dict) and "name" in t[k]:
                    roles.add(str(t[k]["name"]))
            for k in ("block", "rescue", "always"):
                tasks(t.get(k))

    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        for r in play.get("roles", []) or []:
            roles.add(str(r.get("role") or r.get("name")) if isinstance(r, dict) else str(r))
        for k in ("pre_tasks", "tasks", "post_tasks"):
            tasks(play.get(k))
    return roles


def _one_line(text: Any, limit: int = 600) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _failure_message(res: dict[str, Any]) -> str:
    msg = res.get("msg") or ""
    if isinstance(msg, str) and msg.startswith("non-zero return code"):
        msg = ""
    if not msg:
        for key in ("stderr", "stdout"):
            lines = [ln for ln in str(res.get(key) or "").splitlines() if ln.strip()]
            # a harness command on the host says why it failed in its "harness: error:" line; the
            # daemon log lines it quotes after it (or a daemon's own chatter) are not the reason
            said = [i for i, ln in enumerate(lines) if ln.startswith("harness: error:")]
            if said:
                msg = lines[said[-1]].removeprefix("harness: ")
                if msg.endswith(":") and said[-1] + 1 < len(lines):
                    msg += " " + lines[-1].strip()
                break
            if lines:
                msg = lines[-1]
                break
    if not msg and res.get("rc") is not None:
        msg = f"exit {res['rc']}"
    return _one_line(msg or "failed")


class _Events:
    def __init__(self, hosts: list[str], say: Say) -> None:
        self.reports = {h: HostReport(h) for h in hosts}
        self.say = say
        self.item_errors: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        task = data.get("task") or ""
        role = data.get("role")
        label = f"{role} : {task}" if role and not task.startswith(f"{role} :") else task
        res = data.get("res") or {}
        rep = self.reports.get(host) if host else None
        if kind == "playbook_on_play_start":
            self.say(f"harness: play {data.get('play', '')!r}")
        elif kind == "runner_on_ok" and rep is not None:
            rep.ok += 1
            if isinstance(res.get("node_facts"), dict):
                rep.facts = res["node_facts"]
            msg = res.get("msg")
            if isinstance(msg, dict) and isinstance(msg.get("harness_report"), dict):
                rep.report.update(msg["harness_report"])
            if res.get("changed"):
                rep.changed += 1
                rep.changed_tasks.append(label)
                rep.diffs += [f"{label}:\n{d}" for d in render_diffs(res.get("diff"))]
                self.say(f"  [{host}] changed: {label}")
        elif kind == "runner_item_on_failed" and host:
            self.item_errors[host] = _failure_message(res)
        elif kind == "runner_on_failed" and rep is not None:
            msg = _failure_message(res)
            if msg.startswith("One or more items failed") and host in self.item_errors:
                msg = self.item_errors.pop(host)
            rep.error = f"task {label!r} failed: {msg}"
            if not data.get("ignore_errors"):
                self.say(f"  [{host}] failed: {label}: {msg}")
        elif kind == "runner_on_unreachable" and rep is not None:
            rep.error = f"unreachable: {_failure_message(res)}"
            self.say(f"  [{host}] unreachable: {_failure_message(res)}")
        elif kind == "runner_on_skipped" and rep is not None:
            rep.skipped += 1
        elif kind == "playbook_on_stats":
            for name, r in self.reports.items():
                r.failed = int((data.get("failures") or {}).get(name, 0))
                r.rescued = int((data.get("rescued") or {}).get(name, 0))
                if (data.get("dark") or {}).get(name):
                    r.status = "unreachable"
                elif r.failed:
                    r.status = "failed"
                elif name in (data.get("processed") or {}):
                    r.status = "changed" if r.changed else "ok"
                    if not r.rescued:
                        r.error = None
                else:
                    r.status = "not-run"
        return True


def run_playbook(
    inventory: Inventory,
    playbook: str | Path,
    hosts: list[LabHost],
    private_dir: Path,
    *,
    extravars: dict[str, Any] | None = None,
    extra_host_vars: dict[str, dict[str, Any]] | None = None,
    forks: int = 5,
    say: Say | None = None,
    timeout_s: float | None = None,
    check: bool = False,
    diff: bool = False,
) -> PlaybookResult:
    """Run ``playbook`` on ``hosts`` with ansible-runner; never raises for a host's failure.

    ``check`` runs Ansible in check mode (nothing changes on the host), ``diff`` asks every task
    for the diff of what it changes (or would change); both are ``ansible-playbook`` options.
    """
    # lazy: Ansible loads only when playbooks run
    import ansible_runner

    say = say or (lambda _m: None)
    path = resolve_playbook(str(playbook))
    private_dir = private_dir.resolve()  # ansible-runner runs in the playbook's directory
    private_dir.mkdir(parents=True, exist_ok=True)
    inv_dir = private_dir / "inventory"
    inv_dir.mkdir(exist_ok=True)
    inv_file = inv_dir / "hosts.yml"
    inv_file.write_text(yaml.safe_dump(inventory.ansible_inventory(hosts, extra_host_vars), sort_keys=False))
    events = _Events([h.name for h in hosts], say)
    # ssh ControlMaster sockets: a short private path (the socket path limit is 108 bytes),
    # removed with their master processes at the end
    cp_dir = Path(tempfile.mkdtemp(prefix="harness-cp-"))
    env = {
        "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=30s",
        "ANSIBLE_LOCAL_TEMP": str(private_dir / "tmp"),
    }
    t0 = time.monotonic()
    try:
        r = ansible_runner.run(
            private_data_dir=str(private_dir),
            project_dir=str(path.parent),
            playbook=path.name,
            inventory=str(inv_file),
            extravars=extravars or {},
            envvars=env,
            forks=max(1, forks),
            ident=path.stem,
            quiet=True,
            event_handler=events,
            timeout=int(timeout_s) if timeout_s else None,
            rotate_artifacts=0,
            **playbook_options(check=check, diff=diff),
        )
    except Exception as exc:  # ansible-runner's own failures (missing ansible-playbook, bad dir)
        raise HarnessError(f"ansible-runner could not run {path.name}: {exc}") from None
    finally:
        _stop_control_masters(cp_dir)
    elapsed = time.monotonic() - t0
    result = PlaybookResult(path.name, str(r.status), int(r.rc or 0), events.reports, private_dir, elapsed)
    if r.status in ("failed", "timeout") and not result.failed_hosts:
        # the playbook itself failed (syntax, missing role, timeout): say so for every host
        reason = "timed out" if r.status == "timeout" else _stdout_error(private_dir, path.stem)
        for rep in result.hosts.values():
            if rep.status in ("ok", "not-run"):
                rep.status = "failed"
                rep.error = f"{path.name}: {reason}"
    return result


def playbook_options(*, check: bool, diff: bool) -> dict[str, Any]:
    """ansible-runner keywords for ``--check`` / ``--diff`` (none when neither is asked)."""
    flags = [f for f, on in (("--check", check), ("--diff", diff)) if on]
    return {"cmdline": " ".join(flags)} if flags else {}


def render_diffs(diff: Any) -> list[str]:
    """Ansible's ``diff`` result (a dict or a list of dicts with before/after or prepared) as
    unified diff texts."""
    items = diff if isinstance(diff, list) else [diff] if isinstance(diff, dict) else []
    out = []
    for d in items:
        if not isinstance(d, dict):
            continue
        if isinstance(d.get("prepared"), str):
            out.append(d["prepared"])
            continue
        before, after = d.get("before"), d.get("after")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        text = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=str(d.get("before_header") or "before"),
                tofile=str(d.get("after_header") or "after"),
            )
        )
        out.append(text if text.endswith("\n") else text + "\n")
    return out


def _stdout_error(private_dir: Path, ident: str) -> str:
    out = private_dir / "artifacts" / ident / "stdout"
    try:
        lines = [ln for ln in out.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "ansible-playbook failed (no output)"
    errs = [ln for ln in lines if "ERROR" in ln]
    return _one_line((errs or lines or ["ansible-playbook failed"])[-1])


def _stop_control_masters(cp_dir: Path) -> None:
    for sock in cp_dir.iterdir() if cp_dir.is_dir() else []:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "placeholder"],
                capture_output=True,
                timeout=10,
            )
    shutil.rmtree(cp_dir, ignore_errors=True)


def artifact_files(private_dir: Path) -> list[Path]:
    return sorted(p for p in private_dir.rglob("*") if p.is_file())
