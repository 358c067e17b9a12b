"""harness.images: OCI layout and docker archive, valid and byte-for-byte deterministic."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from harness import __version__, images
from harness.errors import HarnessError


def fake_elf(path: Path, machine: int = 62, payload: bytes = b"static binary") -> Path:
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4] = 2  # 64-bit
    header[5] = 1  # little endian
    header[18:20] = machine.to_bytes(2, "little")
    path.write_bytes(bytes(header) + payload)
    return path


def members(tar: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(tar) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f else None
    return out


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    return fake_elf(tmp_path / "leak")


def test_names_are_fully_qualified() -> None:
    assert f"registry.local/harness/leak:{__version__}" == images.LEAK_IMAGE
    assert f"registry.local/harness/pause:{__version__}" == images.PAUSE_IMAGE
    assert images.split_reference("registry.local:5000/a/b:1.2") == ("registry.local:5000/a/b", "1.2")
    assert images.split_reference("registry.local:5000/a/b") == ("registry.local:5000/a/b", "latest")


def test_oci_layout_is_valid(binary: Path, tmp_path: Path) -> None:
    out = images.build_image(
        binary,
        images.LEAK_IMAGE,
        ["/leak"],
        tmp_path / "leak.tar",
        "oci",
        extra_names=[images.image_name("leak", "latest")],
    )
    m = members(out)
    assert json.loads(m["oci-layout"] or b"") == {"imageLayoutVersion": "1.0.0"}
    blobs = {k.removeprefix("blobs/sha256/"): v for k, v in m.items() if k.startswith("blobs/sha256/") and v}
    # every blob is stored under the digest of its content
    for name, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == name

    def blob(desc: dict[str, Any]) -> bytes:
        data = blobs[desc["digest"].removeprefix("sha256:")]
        assert len(data) == desc["size"]
        return data

    index = json.loads(m["index.json"] or b"")
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    refs = {d["annotations"]["io.containerd.image.name"]: d for d in index["manifests"]}
    assert set(refs) == {images.LEAK_IMAGE, "registry.local/harness/leak:latest"}
    desc = refs[images.LEAK_IMAGE]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == __version__
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = json.loads(blob(desc))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(blob(manifest["config"]))
    (layer_desc,) = manifest["layers"]
    assert layer_desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    layer = blob(layer_desc)
    # uncompressed layer: its diff_id is its digest
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha(layer)]}
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["Entrypoint"] == ["/leak"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        leak = tf.getmember("leak")
        assert leak.mode == 0o755 and leak.uid == 0 and leak.mtime == 0
        f = tf.extractfile(leak)
        assert f is not None and f.read() == binary.read_bytes()
        assert tf.getmember("tmp").isdir()
    assert images.image_id(out) == manifest["config"]["digest"]


def test_docker_archive_is_valid(binary: Path, tmp_path: Path) -> None:
    out = images.build_image(binary, images.LEAK_IMAGE, ["/leak", "--chunk=1"], tmp_path / "d.tar", "docker")
    m = members(out)
    (entry,) = json.loads(m["manifest.json"] or b"")
    assert entry["RepoTags"] == [images.LEAK_IMAGE]
    config_bytes = m[entry["Config"]] or b""
    assert entry["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
    config = json.loads(config_bytes)
    assert config["config"]["Entrypoint"] == ["/leak", "--chunk=1"]
    (layer_path,) = entry["Layers"]
    assert config["rootfs"]["diff_ids"] == [sha(m[layer_path] or b"")]
    repos = json.loads(m["repositories"] or b"")
    assert repos == {"registry.local/harness/leak": {__version__: layer_path.split("/")[0]}}
    assert images.image_id(out) == "sha256:" + entry["Config"].removesuffix(".json")


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_archives_are_deterministic(tmp_path: Path, fmt: images.Format) -> None:
    b1 = fake_elf(tmp_path / "one")
    (tmp_path / "other").mkdir()
    b2 = fake_elf(tmp_path / "other" / "two")
    a = images.build_image(b1, images.LEAK_IMAGE, ["/leak"], tmp_path / "a.tar", fmt)
    b = images.build_image(b2, images.LEAK_IMAGE, ["/leak"], tmp_path / "b.tar", fmt)
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tf:
        names = tf.getnames()
        assert names == sorted(names)
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in tf.getmembers())
    # a different binary is a different image
    c = images.build_image(
        fake_elf(tmp_path / "three", payload=b"x"), images.LEAK_IMAGE, ["/leak"], tmp_path / "c.tar", fmt
    )
    assert images.image_id(c) != images.image_id(a)


def test_architecture_comes_from_the_elf_header(tmp_path: Path) -> None:
    arm = fake_elf(tmp_path / "arm", machine=183)
    out = images.build_image(arm, "registry.local/harness/x:1", ["/x"], tmp_path / "x.tar", "oci")
    index = json.loads(members(out)["index.json"] or b"")
    assert index["manifests"][0]["platform"]["architecture"] == "arm64"
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(HarnessError, match="not an ELF"):
        images.build_image(tmp_path / "script", "r/x:1", ["/x"], tmp_path / "y.tar", "oci")
    with pytest.raises(HarnessError, match="absolute"):
        images.build_image(arm, "r/x:1", ["x"], tmp_path / "z.tar", "oci")
