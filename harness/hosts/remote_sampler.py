#!/usr/bin/env python3
"""The harness agent pushed to a lab host: stdlib only, one file, any Python >= 3.8.

It is copied by SFTP (``harness.hosts.remote``) and started over an SSH exec channel. Four
sub-commands:

``sample``
    Stream JSON lines of ``/proc/meminfo`` and selected cgroup files at N Hz into a spool file on
    the host. Files are opened once and re-read with ``pread`` at offset 0 (cgroup and procfs
    values are fresh at every read), so a tick costs a few syscalls instead of an SFTP round trip
    per file. A cgroup that does not exist yet is looked for at every tick; one that disappears
    is reported once and dropped.
``spawn``
    Run a command detached from the SSH session (new session, double fork) under a small
    supervisor that records ``pid.json`` (pid and kernel start time) and ``exit.json`` (exit
    status) in a job directory; stdout and stderr go to ``output.log`` there. A dropped SSH
    connection therefore never kills the work: the harness reconnects and carries on.
``follow``
    Copy a file to stdout from a byte offset as it grows (``tail -f`` that knows where to
    resume), until the job that writes it has exited and everything is sent.
``stop``
    Stop a job by the pid in its ``pid.json`` (only if that pid still has the recorded start
    time, so a reused pid is never signalled): SIGTERM, then SIGKILL after a grace period.

Line formats of ``sample`` (one JSON object per line):

``{"kind": "header", "version": 1, "hz": 10.0, "host": ..., "boot_id": ..., "memory_root": ...}``
``{"kind": "sample", "seq": 0, "t": <monotonic s>, "wall": <epoch s>, "meminfo": {name: bytes},
"cg": {name: {"usage": bytes, "limit": bytes|null, "stat": {key: value}}}}``
``{"kind": "cgroup", "name": ..., "state": "found"|"gone", "path": ..., "version": 1|2}``
``{"kind": "end", "seq": <next seq>, "reason": "stopped"|"max-seconds"|"job-exited"}``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

VERSION = 1
MEMINFO_FIELDS = ("MemTotal", "MemFree", "MemAvailable", "Cached", "Buffers", "SwapTotal", "SwapFree")
STAT_KEYS = {
    1: ("total_rss", "total_cache", "total_inactive_file", "total_active_file", "total_mapped_file"),
    2: ("anon", "file", "inactive_file", "active_file", "shmem"),
}


# --------------------------------------------------------------------------- helpers


def _write_json(path: str, obj: object) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: str) -> dict[str, object] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat; None when the pid is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None
    return int(rest[19])


def job_pid(job_dir: str, key: str = "pid") -> int | None:
    """The job's pid if that process still runs with the recorded start time."""
    rec = _read_json(os.path.join(job_dir, "pid.json"))
    pid = rec.get(key) if rec else None
    if not isinstance(pid, int) or rec is None:
        return None
    start = proc_start_time(pid)
    return pid if start is not None and start == rec.get(f"{key}_start") else None


def memory_root() -> tuple[str, int]:
    """(mount point of the memory controller, cgroup version); v1 preferred on hybrid hosts."""
    v2 = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            if rfields[0] == "cgroup" and "memory" in rfields[2].split(","):
                return fields[4], 1
            if rfields[0] == "cgroup2" and v2 is None:
                v2 = fields[4]
    if v2 is None:
        raise SystemExit("no memory cgroup controller is mounted")
    return v2, 2


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name in MEMINFO_FIELDS:
            parts = rest.split()
            value = int(parts[0])
            out[name] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return out


def parse_flat(text: str, keys: tuple[str, ...] | None) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if keys is None or k in keys:
            try:
                out[k] = int(v)
            except ValueError:
                continue
    return out


def parse_limit(text: str) -> int | None:
    s = text.strip()
    if s == "max":
        return None
    v = int(s)
    # v1 "unlimited" is PAGE_COUNTER_MAX * PAGE_SIZE, a value near 2**63
    return None if v >= (1 << 62) else v


# --------------------------------------------------------------------------- sample


class _Cgroup:
    def __init__(self, name: str, path: str, version: int, stat_keys: tuple[str, ...] | None) -> None:
        self.name = name
        self.path = path
        self.version = version
        self.keys = stat_keys
        self.fds: dict[str, int] = {}
        self.limit: int | None = None
        self.state = "missing"

    def open(self) -> bool:
        if not os.path.isdir(self.path):
            return False
        names = (
            ("usage", "memory.usage_in_bytes"),
            ("stat", "memory.stat"),
            ("limit", "memory.limit_in_bytes"),
        )
        if self.version == 2:
            names = (("usage", "memory.current"), ("stat", "memory.stat"), ("limit", "memory.max"))
        try:
            for key, fname in names:
                self.fds[key] = os.open(os.path.join(self.path, fname), os.O_RDONLY)
        except OSError:
            self.close()
            return False
        self.state = "found"
        return True

    def read(self) -> dict[str, object]:
        usage = int(os.pread(self.fds["usage"], 64, 0))
        stat = parse_flat(os.pread(self.fds["stat"], 65536, 0).decode(), self.keys)
        limit = parse_limit(os.pread(self.fds["limit"], 64, 0).decode())
        return {"usage": usage, "limit": limit, "stat": stat}

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = {}


def cmd_sample(args: argparse.Namespace) -> int:
    root, version = memory_root()
    keys: tuple[str, ...] | None = None if args.stat == "all" else STAT_KEYS[version]
    if args.stat not in ("all", "default"):
        keys = tuple(k for k in args.stat.split(",") if k)
    cgroups = []
    for spec in args.cgroup or []:
        name, sep, rel = spec.partition("=")
        if not sep or not name:
            raise SystemExit(f"--cgroup {spec!r}: expected NAME=PATH")
        path = rel if rel.startswith("/sys/") else os.path.join(root, rel.lstrip("/"))
        cgroups.append(_Cgroup(name, path, version, keys))
    stop = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    mi_fd = os.open("/proc/meminfo", os.O_RDONLY) if args.meminfo else None
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = ""
    period = 1.0 / args.hz
    until_exit = os.path.join(args.until_job, "exit.json") if args.until_job else None
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - closed below
    header = {
        "kind": "header",
        "version": VERSION,
        "hz": args.hz,
        "host": socket.gethostname(),
        "boot_id": boot_id,
        "memory_root": root,
        "cgroup_version": version,
        "pid": os.getpid(),
    }
    out.write(json.dumps(header) + "\n")
    t_start = time.monotonic()
    seq = 0
    reason = "stopped"
    next_t = t_start
    try:
        while not stop["flag"]:
            now = time.monotonic()
            if args.max_seconds and now - t_start >= args.max_seconds:
                reason = "max-seconds"
                break
            if until_exit and os.path.exists(until_exit):
                reason = "job-exited"
                break
            row: dict[str, object] = {"kind": "sample", "seq": seq, "t": now, "wall": time.time()}
            if mi_fd is not None:
                row["meminfo"] = parse_meminfo(os.pread(mi_fd, 8192, 0).decode())
            cg: dict[str, object] = {}
            for c in cgroups:
                if c.state == "missing" and c.open():
                    out.write(
                        json.dumps(
                            {
                                "kind": "cgroup",
                                "name": c.name,
                                "state": "found",
                                "path": c.path,
                                "version": version,
                            }
                        )
                        + "\n"
                    )
                if c.state != "found":
                    continue
                try:
                    cg[c.name] = c.read()
                except (OSError, ValueError):
                    c.close()
                    c.state = "gone"
                    out.write(
                        json.dumps({"kind": "cgroup", "name": c.name, "state": "gone", "path": c.path}) + "\n"
                    )
            row["cg"] = cg
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            seq += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:  # fell behind (suspended, overloaded): do not burst to catch up
                next_t = time.monotonic()
    finally:
        out.write(json.dumps({"kind": "end", "seq": seq, "reason": reason}) + "\n")
        out.close()
        for c in cgroups:
            c.close()
    return 0


# --------------------------------------------------------------------------- spawn / stop


def cmd_spawn(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise SystemExit("spawn: no command given")
    job = args.dir
    os.makedirs(job, exist_ok=True)
    for name in ("pid.json", "exit.json"):
        if os.path.exists(os.path.join(job, name)):
            raise SystemExit(f"spawn: {job} already holds a job ({name} exists)")
    env = dict(os.environ)
    for kv in args.env or []:
        k, _, v = kv.partition("=")
        env[k] = v
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs detached
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            _supervise(job, argv, env, args.cwd)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rec = _read_json(os.path.join(job, "pid.json"))
        if rec:
            sys.stdout.write(json.dumps(rec) + "\n")
            return 0
        time.sleep(0.01)
    raise SystemExit(f"spawn: the job did not start within 10 s (see {job}/output.log)")


def _supervise(job: str, argv: list[str], env: dict[str, str], cwd: str | None) -> None:  # pragma: no cover
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(os.path.join(job, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    except OSError as exc:
        _write_json(os.path.join(job, "pid.json"), {"pid": None, "error": str(exc)})
        _write_json(os.path.join(job, "exit.json"), {"rc": 127, "error": str(exc), "wall": time.time()})
        return
    me = os.getpid()
    _write_json(
        os.path.join(job, "pid.json"),
        {
            "pid": child.pid,
            "pid_start": proc_start_time(child.pid),
            "supervisor": me,
            "supervisor_start": proc_start_time(me),
            "argv": argv,
        },
    )

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    rc = child.wait()
    _write_json(os.path.join(job, "exit.json"), {"rc": rc, "wall": time.time()})


def cmd_stop(args: argparse.Namespace) -> int:
    job = args.dir
    if _read_json(os.path.join(job, "exit.json")):
        print(json.dumps({"stopped": False, "already_exited": True}))
        return 0
    pid = job_pid(job)
    if pid is None:
        print(json.dumps({"stopped": False, "running": False}))
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if _read_json(os.path.join(job, "exit.json")) or job_pid(job) is None:
            print(json.dumps({"stopped": True, "signal": "TERM"}))
            return 0
        time.sleep(0.05)
    if job_pid(job) == pid:
        os.kill(pid, signal.SIGKILL)
    print(json.dumps({"stopped": True, "signal": "KILL"}))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rec = _read_json(os.path.join(args.dir, "pid.json")) or {}
    ex = _read_json(os.path.join(args.dir, "exit.json"))
    print(json.dumps({"pid": rec.get("pid"), "running": job_pid(args.dir) is not None, "exit": ex}))
    return 0


# --------------------------------------------------------------------------- follow


def cmd_follow(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    deadline = time.monotonic() + args.wait_file
    while not os.path.exists(args.file):
        if time.monotonic() > deadline:
            raise SystemExit(f"follow: {args.file} did not appear within {args.wait_file} s")
        time.sleep(args.poll)
    with open(args.file, "rb") as f:
        f.seek(args.offset)
        while True:
            data = f.read(65536)
            if data:
                out.write(data)
                out.flush()
                continue
            if args.job:
                if _read_json(os.path.join(args.job, "exit.json")) is not None:
                    data = f.read()
                    if data:
                        out.write(data)
                        out.flush()
                    return 0
                gone = job_pid(args.job, "supervisor") is None and _read_json(
                    os.path.join(args.job, "pid.json")
                )
                # supervisor gone without writing exit.json (killed): nothing more will come
                if gone and _read_json(os.path.join(args.job, "exit.json")) is None:
                    return 3
            time.sleep(args.poll)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="remote_sampler.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="stream meminfo and cgroup files as JSON lines into a file")
    s.add_argument("--out", required=True)
    s.add_argument("--hz", type=float, default=10.0)
    s.add_argument("--meminfo", action="store_true")
    s.add_argument("--cgroup", action="append", help="NAME=PATH below the memory hierarchy root (repeatable)")
    s.add_argument("--stat", default="default", help="'default', 'all' or comma-separated memory.stat keys")
    s.add_argument("--max-seconds", type=float, default=0.0)
    s.add_argument("--until-job", help="also stop once this spawn job directory has exit.json")
    s.set_defaults(func=cmd_sample)
    sp = sub.add_parser("spawn", help="run a command detached, recording pid.json/exit.json in DIR")
    sp.add_argument("--dir", required=True)
    sp.add_argument("--cwd")
    sp.add_argument("--env", action="append", help="NAME=VALUE added to the environment")
    sp.add_argument("argv", nargs=argparse.REMAINDER)
    sp.set_defaults(func=cmd_spawn)
    f = sub.add_parser("follow", help="copy FILE to stdout from OFFSET as it grows")
    f.add_argument("--file", required=True)
    f.add_argument("--offset", type=int, default=0)
    f.add_argument("--job", help="stop once this job directory has exit.json and the file is drained")
    f.add_argument("--poll", type=float, default=0.05)
    f.add_argument("--wait-file", type=float, default=30.0)
    f.set_defaults(func=cmd_follow)
    st = sub.add_parser("stop", help="stop the job in DIR by its recorded pid")
    st.add_argument("--dir", required=True)
    st.add_argument("--timeout", type=float, default=15.0)
    st.set_defaults(func=cmd_stop)
    ss = sub.add_parser("status", help="print the job's pid, whether it runs and its exit record")
    ss.add_argument("--dir", required=True)
    ss.set_defaults(func=cmd_status)
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # the SSH channel went away: the detached job keeps going
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 141


if __name__ == "__main__":
    sys.exit(main())
