"""What provisioning copies to the hosts: the harness bundle and the workload image archives.

Both are deterministic (sorted entries, fixed times and owners, gzip without a timestamp), so an
unchanged tree gives the same bytes and Ansible's ``copy`` reports no change on the next run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tomllib
from pathlib import Path
from typing import Any

from harness import __version__
from harness.images import build_all, image_name, workload_binary

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HARNESS_LAB_CACHE", str(REPO / ".state" / "lab")))
MTIME = 1_600_000_000  # a fixed time: make(1) sees sources and binaries as equally old


def bundle_files(repo: Path = REPO) -> list[tuple[str, Path]]:
    """(name in the archive, local path) of everything a remote ``python -m harness run`` needs."""

    for w in ("leak", "pause"):
        workload_binary(w)  # build them if missing: the hosts run these very binaries
    files: list[tuple[str, Path]] = []

    def add(pattern: str, base: Path = repo) -> None:
        for p in sorted(base.glob(pattern)):
            if p.is_file() and "__pycache__" not in p.parts:
                files.append((str(p.relative_to(repo)), p))

    for f in ("pyproject.toml", "README.md"):
        if (repo / f).is_file():
            files.append((f, repo / f))
    add("harness/**/*.py")
    add("harness/py.typed")
    add("harness/data/**/*")
    add("workloads/Makefile")
    add("workloads/*.c")
    add("workloads/*.h")
    add("workloads/*.md")
    add("workloads/build/leak")
    add("workloads/build/pause")
    add("profiles/*.yaml")
    add("suites/*.yaml")
    return files


def requirements(repo: Path = REPO) -> str:
    data = tomllib.loads((repo / "pyproject.toml").read_text())
    deps: list[str] = data["project"]["dependencies"]
    return "".join(f"{d}\n" for d in deps)


def build_bundle(out_dir: Path = CACHE, repo: Path = REPO) -> Path:
    """``harness-<version>-<hash>.tar.gz`` with ``src/`` inside; reused when the content is unchanged."""
    entries: list[tuple[str, bytes, int]] = []
    for name, path in bundle_files(repo):
        mode = 0o755 if os.access(path, os.X_OK) and not name.endswith(".py") else 0o644
        entries.append((f"src/{name}", path.read_bytes(), mode))
    entries.append(("src/requirements.txt", requirements(repo).encode(), 0o644))
    entries.sort()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs: set[str] = set()
        for name, data, mode in entries:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    ti.mtime = MTIME
                    tf.addfile(ti)
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = mode
            ti.mtime = MTIME
            tf.addfile(ti, io.BytesIO(data))
    digest = hashlib.sha256(raw.getvalue()).hexdigest()[:12]
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"harness-{__version__}-{digest}.tar.gz"
    if not out.exists():
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw.getvalue())
        os.replace(tmp, out)
    # keep the three newest bundles
    old = sorted(out_dir.glob("harness-*.tar.gz"), key=lambda q: q.stat().st_mtime, reverse=True)
    for q in old[3:]:
        if q != out:
            q.unlink(missing_ok=True)
    return out


def image_archives(out_dir: Path = CACHE / "images") -> list[dict[str, Any]]:
    """The workload images as OCI archives, for the ``images`` role: ``[{src, names}]``."""

    built = build_all(out_dir, "oci")
    return [
        {"src": str(path), "names": [image_name(w), image_name(w, "latest")]}
        for w, path in sorted(built.items())
    ]
