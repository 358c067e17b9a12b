"""Container images of the workloads, written in pure Python: no registry, no ``docker build``.

An image is one static binary (``workloads/build/leak`` or ``.../pause``) at ``/<name>`` in a
single uncompressed layer, with that binary as the entrypoint. Two archive formats:

``oci``
    An OCI image layout in a tar (``oci-layout``, ``index.json``, ``blobs/sha256/...``), as
    ``ctr images import`` (containerd) reads it. ``index.json`` names each image with the
    annotations ``io.containerd.image.name`` (full reference) and
    ``org.opencontainers.image.ref.name`` (the tag).
``docker``
    The ``docker save`` layout of Docker 20.10 (``manifest.json``, ``repositories``,
    ``<config-digest>.json``, ``<layer-id>/{VERSION,json,layer.tar}``), for ``docker load``.
    Docker 20.10's ``docker load`` does not read an OCI layout (checked with 20.10.24: without
    ``manifest.json`` it falls back to the pre-1.10 format and fails with
    "open <data-root>/tmp/docker-import-.../blobs/json: no such file or directory"), so the
    Docker backend uses this format. (Docker >= 25 reads both.)

Both are deterministic: fixed timestamps, owners and modes, sorted entries, so the same
binary always gives the same bytes and the same image id.

Names are fully qualified, ``registry.local/harness/<name>:<harness version>``; ``build_all``
also tags ``:latest``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from harness import __version__
from harness.errors import HarnessError, HostError

REGISTRY = "registry.local/harness"
REPO_ROOT = Path(__file__).resolve().parent.parent
WORKLOADS_DIR = REPO_ROOT / "workloads"
WORKLOADS_BUILD = WORKLOADS_DIR / "build"

Format = Literal["oci", "docker"]

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

# Everything in the archives carries this time: 1970-01-01T00:00:00Z.
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"

# ELF e_machine -> GOARCH (the OCI platform architecture)
_ELF_ARCH = {3: "386", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64", 21: "ppc64le", 22: "s390x"}


def image_name(workload: str, tag: str = __version__) -> str:
    """The fully qualified reference of a workload image, e.g. ``registry.local/harness/leak:0.1.0``."""
    return f"{REGISTRY}/{workload}:{tag}"


LEAK_IMAGE = image_name("leak")
PAUSE_IMAGE = image_name("pause")


def split_reference(name: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); a reference without a tag gets ``latest``."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def elf_architecture(binary: Path) -> str:
    """The OCI architecture of an ELF executable (from its header), e.g. ``amd64``."""
    head = binary.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise HarnessError(f"{binary}: not an ELF executable")
    order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], order)
    try:
        return _ELF_ARCH[machine]
    except KeyError:
        raise HarnessError(f"{binary}: unsupported ELF machine {machine}") from None


def _tarinfo(name: str, size: int = 0, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = mode
    ti.type = kind
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _tar(entries: Mapping[str, bytes | None], modes: Mapping[str, int] | None = None) -> bytes:
    """A deterministic tar of ``{path: content}`` (None = directory, path ending in /), sorted by path."""
    buf = io.BytesIO()
    modes = modes or {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for path in sorted(entries):
            data = entries[path]
            if data is None:
                tf.addfile(
                    _tarinfo(path.rstrip("/") + "/", mode=modes.get(path, 0o755), kind=tarfile.DIRTYPE)
                )
            else:
                tf.addfile(_tarinfo(path, len(data), modes.get(path, 0o644)), io.BytesIO(data))
    return buf.getvalue()


def layer_tar(binary: Path, target: str) -> bytes:
    """The single layer: the binary at ``/<target>`` (0755) and an empty ``/tmp`` (1777)."""
    return _tar({target: binary.read_bytes(), "tmp/": None}, {target: 0o755, "tmp/": 0o1777})


def image_config(
    arch: str, entrypoint: Sequence[str], diff_id: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {
            "Entrypoint": list(entrypoint),
            "Env": ["PATH=/"],
            "WorkingDir": "/",
            "Labels": dict(labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": f"harness.images {__version__}"}],
    }


def build_image(
    binary: Path,
    name: str,
    entrypoint: Sequence[str],
    out: Path,
    fmt: Format = "oci",
    *,
    extra_names: Sequence[str] = (),
) -> Path:
    """Write an image of ``binary`` named ``name`` (and ``extra_names``) to the tar ``out``.

    The binary lands at ``/<basename of entrypoint[0]>``. Returns ``out``.
    """
    binary = Path(binary)
    if not entrypoint or not entrypoint[0].startswith("/"):
        raise HarnessError(f"entrypoint must start with an absolute path, got {list(entrypoint)!r}")
    target = entrypoint[0].lstrip("/")
    arch = elf_architecture(binary)
    layer = layer_tar(binary, target)
    diff_id = _sha256(layer)
    names = [name, *extra_names]
    labels = {
        "org.opencontainers.image.title": split_reference(name)[0].rsplit("/", 1)[-1],
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.source": "kubelet-memory-harness workloads/",
    }
    config = _json(image_config(arch, entrypoint, diff_id, labels))
    config_digest = _sha256(config)

    if fmt == "oci":
        data = _oci_archive(config, config_digest, layer, diff_id, names, arch)
    elif fmt == "docker":
        data = _docker_archive(config, config_digest, layer, diff_id, names)
    else:
        raise HarnessError(f"unknown image format {fmt!r} (oci or docker)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def _oci_archive(
    config: bytes, config_digest: str, layer: bytes, layer_digest: str, names: Sequence[str], arch: str
) -> bytes:
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    )
    manifest_digest = _sha256(manifest)
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        ANNOTATION_CONTAINERD_NAME: n,
                        ANNOTATION_REF_NAME: split_reference(n)[1],
                    },
                }
                for n in names
            ],
        }
    )
    entries: dict[str, bytes | None] = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        "blobs/": None,
        "blobs/sha256/": None,
    }
    for digest, blob in ((config_digest, config), (layer_digest, layer), (manifest_digest, manifest)):
        entries["blobs/sha256/" + digest.removeprefix("sha256:")] = blob
    return _tar(entries)


def _docker_archive(
    config: bytes, config_digest: str, layer: bytes, diff_id: str, names: Sequence[str]
) -> bytes:
    config_hex = config_digest.removeprefix("sha256:")
    # the v1 layer id of `docker save` (one layer, no parent): a digest of the layer's content id
    layer_id = hashlib.sha256(f"{diff_id}\n".encode()).hexdigest()
    v1_json = _json({"id": layer_id, "created": CREATED, "config": {}, "os": "linux"})
    repositories: dict[str, dict[str, str]] = {}
    for n in names:
        repo, tag = split_reference(n)
        repositories.setdefault(repo, {})[tag] = layer_id
    manifest = [
        {"Config": f"{config_hex}.json", "RepoTags": list(names), "Layers": [f"{layer_id}/layer.tar"]}
    ]
    entries: dict[str, bytes | None] = {
        f"{config_hex}.json": config,
        f"{layer_id}/": None,
        f"{layer_id}/VERSION": b"1.0",
        f"{layer_id}/json": v1_json,
        f"{layer_id}/layer.tar": layer,
        "manifest.json": _json(manifest),
        "repositories": _json(repositories),
    }
    return _tar(entries)


def image_id(tar: Path) -> str:
    """The image id (``sha256:`` digest of the config) of an archive written by :func:`build_image`."""
    with tarfile.open(tar) as tf:
        names = tf.getnames()
        if "manifest.json" in names:
            f = tf.extractfile("manifest.json")
            assert f is not None
            return "sha256:" + json.load(f)[0]["Config"].removesuffix(".json")
        f = tf.extractfile("index.json")
        assert f is not None
        digest = json.load(f)["manifests"][0]["digest"]
        f = tf.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
        assert f is not None
        return str(json.load(f)["config"]["digest"])


def workload_binary(name: str, build: bool = True) -> Path:
    """``workloads/build/<name>``, running ``make -C workloads`` first when it is missing or stale."""
    path = WORKLOADS_BUILD / name
    src = WORKLOADS_DIR / f"{name}.c"
    stale = not path.exists() or (src.exists() and src.stat().st_mtime > path.stat().st_mtime)
    if stale and build:
        if shutil.which("make") is None:
            raise HostError("make is not installed (scripts/setup.sh installs it)")
        r = subprocess.run(["make", "-s", "-C", str(WORKLOADS_DIR)], capture_output=True, text=True)
        if r.returncode != 0:
            raise HostError(f"building the workloads failed: {r.stderr.strip()[-2000:]}")
    if not path.exists():
        raise HostError(f"{path} does not exist; run make -C workloads")
    return path


def build_all(out_dir: Path, fmt: Format = "oci") -> dict[str, Path]:
    """Build the ``leak`` and ``pause`` images into ``out_dir``; returns ``{workload: tar}``.

    Each image is named ``registry.local/harness/<workload>:<version>`` and ``...:latest``.
    """
    out_dir = Path(out_dir)
    result = {}
    for workload in ("leak", "pause"):
        binary = workload_binary(workload)
        result[workload] = build_image(
            binary,
            image_name(workload),
            [f"/{workload}"],
            out_dir / f"{workload}-{__version__}.{fmt}.tar",
            fmt,
            extra_names=[image_name(workload, "latest")],
        )
    return result


def import_into_docker(client_or_socket: Any, tar: Path) -> str:
    """``docker load`` the archive ``tar`` (docker format); returns the image id (``sha256:...``).

    ``client_or_socket`` is a ``docker.DockerClient`` or a socket path / ``unix://`` URL.
    """
    # lazy: the Docker SDK loads only when the Docker engine is used
    import docker

    client = client_or_socket
    own = False
    if not isinstance(client, docker.DockerClient):
        url = str(client_or_socket)
        client = docker.DockerClient(base_url=url if "://" in url else f"unix://{url}", timeout=120)
        own = True
    try:
        with open(tar, "rb") as f:
            images = client.images.load(f.read())
        if not images:
            raise HarnessError(f"docker load of {tar} produced no image")
        return str(images[0].id)
    finally:
        if own:
            client.close()


def import_into_containerd(socket: str, namespace: str, tar: Path, *, ctr: str = "ctr") -> None:
    """``ctr -a SOCKET -n NAMESPACE images import TAR`` (OCI format); raises on failure."""
    if shutil.which(ctr) is None:
        raise HostError(f"{ctr} not found (Debian package containerd)")
    r = subprocess.run(
        [ctr, "-a", socket, "-n", namespace, "images", "import", str(tar)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        raise HarnessError(
            f"ctr images import {tar} failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}"
        )
