"""A wheelhouse of the harness's runtime dependencies, built on the controller for hosts without a
package index (the VMs of ``harness lab`` reach no network at all).

``pip wheel -r requirements.txt`` writes every dependency as a wheel (binary wheels as they are,
sdists built once here); they go into one uncompressed tar (wheels are zip files already), which
the ``harness`` role copies, unpacks and installs with ``pip install --no-index --find-links``.
Wheels carry the controller interpreter's tags, so the hosts need the same Python minor version
(Debian 12: 3.11 on both sides); pip on the host refuses a mismatch by name.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.provision.bundle import CACHE, MTIME, REPO, requirements


def wheelhouse_key(reqs: str, python: tuple[int, int] = sys.version_info[:2]) -> str:
    blob = f"{reqs}\npy{python[0]}.{python[1]}".encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def build_wheelhouse(
    out_dir: Path = CACHE, repo: Path = REPO, say: Callable[[str], None] | None = None
) -> Path:
    """``wheelhouse-py3.X-<hash>.tar`` with ``wheelhouse/*.whl``; reused while the requirements hold."""
    say = say or (lambda _m: None)
    reqs = requirements(repo)
    py = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    out = out_dir / f"wheelhouse-{py}-{wheelhouse_key(reqs)}.tar"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"harness: building the wheelhouse for offline hosts ({py}, pip wheel)")
    with tempfile.TemporaryDirectory(prefix="harness-wheelhouse-") as tmp:
        (Path(tmp) / "requirements.txt").write_text(reqs)
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--wheel-dir",
                f"{tmp}/wheelhouse",
                "-r",
                f"{tmp}/requirements.txt",
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            tail = " | ".join(res.stderr.strip().splitlines()[-3:])
            raise HarnessError(f"pip wheel for the wheelhouse failed: {tail}")
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
            d = tarfile.TarInfo("wheelhouse")
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tf.addfile(d)
            (Path(tmp) / "wheelhouse" / "requirements.txt").write_text(reqs)
            for p in sorted((Path(tmp) / "wheelhouse").iterdir()):
                ti = tarfile.TarInfo(f"wheelhouse/{p.name}")
                ti.size, ti.mode, ti.mtime = p.stat().st_size, 0o644, MTIME
                with open(p, "rb") as f:
                    tf.addfile(ti, f)
        tmp_out = out.with_name(f".{out.name}.tmp{os.getpid()}")
        tmp_out.write_bytes(raw.getvalue())
        os.replace(tmp_out, out)
    with tarfile.open(out) as tf:
        n = sum(1 for m in tf.getnames() if m.endswith(".whl"))
    say(f"harness: wheelhouse {out.name}: {n} wheels, {out.stat().st_size / 2**20:.0f} MiB")
    return out
