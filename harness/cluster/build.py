"""Build ``kubelet`` and ``kube-apiserver`` from the ``k8s.io/kubernetes`` Go module, per version.

``go install k8s.io/kubernetes/cmd/kubelet@v1.33.4`` cannot work: the module's go.mod maps every
staging module (k8s.io/api, k8s.io/client-go, ...) to ``./staging/src/...`` with ``replace``
lines and requires them at ``v0.0.0`` (kubernetes/kubernetes#79384). The standard way round it,
used by kubernetes/autoscaler ``cluster-autoscaler/hack/update-deps.sh``, is a wrapper module that
requires ``k8s.io/kubernetes vX.Y.Z`` and replaces each staging module with its published twin
``v 0.Y.Z``. The list of staging modules is read from the downloaded Kubernetes go.mod itself, so
nothing here is hard-coded per minor.

Layout (``cache_root``, default ``/var/lib/harness/cluster/build``)::

    v1.33.4/src/go.mod      the wrapper module (kept: ``go version -m`` and rebuilds use it)
    v1.33.4/bin/kubelet     static binaries (CGO_ENABLED=0, upstream release tags and ldflags)
    v1.33.4/build.json      what was built, with which Go, how long each step took, sha256s
    v1.33.4/build.log       the go command's output
    v1.33.4/.lock           held while building (two ``up`` at once build once)

A version whose ``build.json`` matches its binaries is never rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, HostError

DEFAULT_CACHE = Path(os.environ.get("HARNESS_BUILD_CACHE", "/var/lib/harness/cluster/build"))
COMPONENTS = ("kubelet", "kube-apiserver")
# Upstream release builds: hack/lib/golang.sh passes -tags=selinux,notest,grpcnotrace (kube::golang::build_binaries)
BUILD_TAGS = "selinux,notest,grpcnotrace"
# hack/lib/version.sh kube::version::ldflags sets these keys in both packages.
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
_VERSION_RE = re.compile(r"^v?1\.(\d+)\.(\d+)$")
_STAGING_RE = re.compile(r"^\s*(k8s\.io/[A-Za-z0-9_.-]+)\s*=>\s*\./staging/", re.M)

Progress = Callable[[str], None]


@dataclass
class Build:
    version: str  # "1.33.4"
    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def src_dir(self) -> Path:
        return self.root / "src"

    @property
    def log(self) -> Path:
        return self.root / "build.log"

    @property
    def record_path(self) -> Path:
        return self.root / "build.json"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def record(self) -> dict[str, Any] | None:
        try:
            rec: dict[str, Any] = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None
        return rec

    def complete(self, components: tuple[str, ...] = COMPONENTS) -> bool:
        """True when every component exists with the checksum recorded when it was built."""
        rec = self.record()
        if not rec or rec.get("version") != self.version:
            return False
        sums = rec.get("sha256", {})
        for c in components:
            p = self.binary(c)
            if c not in sums or not p.is_file() or _sha256(p) != sums[c]:
                return False
        return True


@dataclass
class BuildResult:
    build: Build
    cached: bool
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def bin_dir(self) -> Path:
        return self.build.bin_dir


def normalize_version(version: str) -> str:
    """``v1.33.4`` / ``1.33.4`` -> ``1.33.4``; anything else is a clear error."""
    m = _VERSION_RE.match(version.strip())
    if not m:
        raise HarnessError(f"kubelet version {version!r}: expected a release like 1.33.4 (major.minor.patch)")
    return f"1.{m.group(1)}.{m.group(2)}"


def build_for(version: str, cache_root: Path | None = None) -> Build:
    v = normalize_version(version)
    return Build(v, (cache_root or DEFAULT_CACHE) / f"v{v}")


def cached_versions(cache_root: Path | None = None) -> list[Build]:
    root = cache_root or DEFAULT_CACHE
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and _VERSION_RE.match(d.name):
                b = Build(normalize_version(d.name), d)
                if b.complete():
                    out.append(b)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def go_binary() -> str:
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(p).exists()), None
    )
    if not go:
        raise HostError(
            "the Go toolchain (go) is not on PATH; it is needed to build kubelet and kube-apiserver"
        )
    return go


def go_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Never download a toolchain: build with the one installed (GOTOOLCHAIN=local).
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=mod"
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOPATH", str(Path.home() / "go"))
    if extra:
        env.update(extra)
    return env


def ldflags(version: str) -> str:
    """The version stamp upstream's hack/lib/version.sh (kube::version::ldflags) writes."""
    major, minor, _ = version.split(".")
    flags = ["-s", "-w"]
    for pkg in VERSION_PACKAGES:
        flags += [
            f"-X {pkg}.gitVersion=v{version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            # the module zip carries no commit; this marks a build from the module proxy
            f"-X {pkg}.gitCommit=module-proxy-v{version}",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """The modules Kubernetes' go.mod maps to ``./staging/src/...`` (they need replace lines)."""
    return sorted(set(_STAGING_RE.findall(kubernetes_go_mod)))


def wrapper_go_mod(version: str, staging: list[str], go_directive: str) -> str:
    minor, patch = version.split(".")[1:]
    lines = [
        "// Generated by harness/cluster/build.py: a wrapper module to build kubelet and kube-apiserver",
        "// from k8s.io/kubernetes, whose staging modules are replaced by their published twins.",
        "module harness.local/k8sbuild",
        "",
        f"go {go_directive}",
        "",
        f"require k8s.io/kubernetes v{version}",
        "",
        "replace (",
    ]
    lines += [f"\t{m} => {m} v0.{minor}.{patch}" for m in staging]
    lines.append(")")
    return "\n".join(lines) + "\n"


_GO_DIRECTIVE_RE = re.compile(r"^go\s+(\S+)", re.M)
_UNAVAILABLE_RE = re.compile(r"(k8s\.io/[\w.-]+)@(v[\w.+-]+): reading \S+: (40[34])")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, step: str) -> str:
    with open(log, "a") as lf:
        lf.write(f"\n$ {' '.join(cmd)}\n")
        lf.flush()
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lf.write(proc.stdout)
    if proc.returncode != 0:
        missing = _UNAVAILABLE_RE.findall(proc.stdout)
        if missing:
            mods = ", ".join(sorted({f"{m}@{v}" for m, v, _ in missing}))
            raise HostError(
                f"building Kubernetes: the Go module proxy does not serve {mods} ({step}); "
                f"choose another patch release of that minor (see {log})"
            )
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise HostError(f"building Kubernetes: {step} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return proc.stdout


def ensure_built(
    version: str,
    *,
    cache_root: Path | None = None,
    components: tuple[str, ...] = COMPONENTS,
    progress: Progress | None = None,
) -> BuildResult:
    """Build (or reuse) the binaries of ``version``; safe to call from several processes at once."""
    say = progress or (lambda _m: None)
    build = build_for(version, cache_root)
    if build.complete(components):
        return BuildResult(build, cached=True)
    with _locked(build.root / ".lock"):
        if build.complete(components):  # another process finished it while we waited
            return BuildResult(build, cached=True)
        return _build(build, components, say)


def _build(build: Build, components: tuple[str, ...], say: Progress) -> BuildResult:
    v = build.version
    go = go_binary()
    env = go_env()
    build.src_dir.mkdir(parents=True, exist_ok=True)
    build.bin_dir.mkdir(parents=True, exist_ok=True)
    build.log.write_text(f"# build of Kubernetes v{v} started {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
    seconds: dict[str, float] = {}

    t = time.monotonic()
    say(f"build v{v}: downloading k8s.io/kubernetes@v{v} from the module proxy")
    out = _run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@v{v}"], build.src_dir, env, build.log, "download"
    )
    try:
        info = json.loads(out[out.index("{") :])
    except ValueError as exc:
        raise HostError(
            f"building Kubernetes: cannot read `go mod download -json` output (see {build.log})"
        ) from exc
    if info.get("Error"):
        raise HostError(f"building Kubernetes v{v}: {info['Error']}")
    k8s_go_mod = Path(info["GoMod"]).read_text()
    staging = staging_modules(k8s_go_mod)
    if not staging:
        raise HostError(f"building Kubernetes v{v}: no staging replace lines in {info['GoMod']}")
    gm = _GO_DIRECTIVE_RE.search(k8s_go_mod)
    (build.src_dir / "go.mod").write_text(wrapper_go_mod(v, staging, gm.group(1) if gm else "1.22.0"))
    (build.src_dir / "go.sum").unlink(missing_ok=True)
    pkgs = [f"k8s.io/kubernetes/cmd/{c}@v{v}" for c in components]
    say(f"build v{v}: resolving the module graph ({len(staging)} staging modules replaced)")
    _run([go, "get", *pkgs], build.src_dir, env, build.log, "go get")
    seconds["download"] = round(time.monotonic() - t, 1)

    sums: dict[str, str] = {}
    for c in components:
        t = time.monotonic()
        say(f"build v{v}: compiling {c} (a cold build takes minutes; log {build.log})")
        target = build.bin_dir / c
        tmp = target.with_suffix(".tmp")
        _run(
            [
                go,
                "build",
                "-trimpath",
                f"-tags={BUILD_TAGS}",
                "-ldflags",
                ldflags(v),
                "-o",
                str(tmp),
                f"k8s.io/kubernetes/cmd/{c}",
            ],
            build.src_dir,
            env,
            build.log,
            f"go build {c}",
        )
        tmp.replace(target)
        sums[c] = _sha256(target)
        seconds[c] = round(time.monotonic() - t, 1)
        say(f"build v{v}: {c} done in {seconds[c]:.0f} s")

    gov = subprocess.run([go, "version"], capture_output=True, text=True, env=env).stdout.strip()
    old = build.record() or {}
    old_sums = old.get("sha256", {}) if old.get("version") == v else {}
    record = {
        "version": v,
        "go": gov,
        "tags": BUILD_TAGS,
        "cgo": False,
        "staging_modules": staging,
        "sha256": {**old_sums, **sums},
        "seconds": seconds,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp_rec = build.record_path.with_suffix(".tmp")
    tmp_rec.write_text(json.dumps(record, indent=2) + "\n")
    tmp_rec.replace(build.record_path)
    return BuildResult(build, cached=False, seconds=seconds)


def binary_version(path: Path) -> str | None:
    """``kubelet --version`` -> ``v1.33.4`` (None when it does not run)."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"v\d+\.\d+\.\d+\S*", out)
    return m.group(0) if m else None
