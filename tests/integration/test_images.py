"""Workload images in the project's own engines: Docker (docker load) and containerd (ctr import)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import images
from harness.engines.docker import DockerEngine, cgroup_parent_dirs, cleanup_cgroup_parent

from .conftest import MiB

LIMIT = 64 * MiB


@pytest.fixture(scope="session")
def docker_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return images.build_all(tmp_path_factory.mktemp("images"), "docker")


@pytest.fixture(scope="session")
def oci_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return images.build_all(tmp_path_factory.mktemp("oci"), "oci")


@pytest.fixture
def cgroup_parent(request: pytest.FixtureRequest) -> str:
    """A ``--cgroup-parent`` under a harness prefix, removed from every hierarchy afterwards."""
    top = f"/harness-test-{uuid.uuid4().hex[:10]}"
    request.addfinalizer(lambda: cleanup_cgroup_parent(top))
    return f"{top}/kubepods/pod-leak"


@pytest.fixture
def containers(docker_engine: DockerEngine) -> Iterator[list[Any]]:
    """Containers a test created; force-removed afterwards."""
    made: list[Any] = []
    yield made
    for c in made:
        with contextlib.suppress(Exception):
            c.remove(force=True)


@pytest.mark.docker
def test_engine_is_ours_and_uses_cgroupfs(docker_engine: DockerEngine) -> None:
    assert docker_engine.ping()
    info = docker_engine.info()
    assert info["CgroupDriver"] == "cgroupfs"
    assert info["DockerRootDir"] == str(docker_engine.state_dir / "data")
    assert docker_engine.socket == Path("/run/harness/docker.sock")


@pytest.mark.docker
def test_docker_does_not_load_an_oci_layout(docker_engine: DockerEngine, oci_images: dict[str, Path]) -> None:
    """Docker 20.10 needs manifest.json; the harness uses the docker format for it (harness.images)."""
    import docker

    c = docker_engine.client()
    try:
        version = c.version()["Version"]
        if not version.startswith("20."):
            pytest.skip(f"only Docker 20.10 is known not to load OCI layouts (have {version})")
        with pytest.raises(docker.errors.DockerException, match="no such file or directory"):
            c.images.load(oci_images["pause"].read_bytes())
    finally:
        c.close()


@pytest.mark.docker
def test_leak_image_is_oom_killed_in_docker(
    docker_engine: DockerEngine, docker_images: dict[str, Path], cgroup_parent: str, containers: list[Any]
) -> None:
    client = docker_engine.client()
    try:
        image_id = images.import_into_docker(client, docker_images["leak"])
        assert image_id == images.image_id(docker_images["leak"])
        assert client.images.get(images.LEAK_IMAGE).id == image_id
        chunk = 4 * MiB
        c = client.containers.create(
            images.LEAK_IMAGE,
            command=[f"--chunk={chunk}", "--interval-ms=20", "--max=0"],
            mem_limit=LIMIT,
            memswap_limit=LIMIT,
            cgroup_parent=cgroup_parent,
            labels={"harness.test": "oom"},
        )
        containers.append(c)
        c.start()
        result = c.wait(timeout=60)
        c.reload()
        state = c.attrs["State"]
        assert state["OOMKilled"] is True, state
        assert state["ExitCode"] == 137 == result["StatusCode"]
        evs = [json.loads(ln) for ln in c.logs(stdout=True, stderr=False).decode().splitlines()]
        start = evs[0]
        assert start["event"] == "start" and start["pid"] == 1
        assert start["limit"] == LIMIT
        last = [e for e in evs if e["event"] == "chunk"][-1]["allocated"]
        assert last < LIMIT <= last + chunk
        # Docker created the parent in the hierarchies (cleaned up from all of them by the fixture)
        assert cgroup_parent_dirs(cgroup_parent)
    finally:
        client.close()


@pytest.mark.docker
def test_pause_image_stops_on_sigterm(
    docker_engine: DockerEngine, docker_images: dict[str, Path], cgroup_parent: str, containers: list[Any]
) -> None:
    client = docker_engine.client()
    try:
        images.import_into_docker(client, docker_images["pause"])
        c = client.containers.run(
            images.PAUSE_IMAGE, detach=True, mem_limit=LIMIT, cgroup_parent=cgroup_parent
        )
        containers.append(c)
        c.reload()
        assert c.attrs["State"]["Running"]
        t0 = time.monotonic()
        c.stop(timeout=10)  # SIGTERM; SIGKILL only after 10 s
        assert time.monotonic() - t0 < 5
        c.reload()
        assert c.attrs["State"]["ExitCode"] == 0
    finally:
        client.close()


@pytest.fixture
def private_containerd() -> Iterator[str]:
    """A containerd of its own (root, state and socket in a temporary directory); stopped by pid."""
    if shutil.which("containerd") is None:
        pytest.fail("containerd is not installed (Debian package containerd, scripts/setup.sh)")
    d = Path(tempfile.mkdtemp(prefix="hctrd-", dir="/tmp"))  # short: unix socket paths are limited
    sock = d / "containerd.sock"
    (d / "config.toml").write_text(
        "version = 2\n"
        f'root = "{d}/root"\nstate = "{d}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
        '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
    )
    with open(d / "containerd.log", "wb") as log:
        p = subprocess.Popen(
            ["containerd", "--config", str(d / "config.toml")],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["ctr", "-a", str(sock), "version"], capture_output=True).returncode != 0:
            assert p.poll() is None, (d / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not answer within 20 s"
            time.sleep(0.1)
        yield str(sock)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        # snapshots may be mounted below root: unmount before removing the directory
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            mnt = line.split()[1]
            if mnt.startswith(str(d) + "/"):
                subprocess.run(["umount", mnt], check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.integration
def test_oci_image_imports_into_containerd(private_containerd: str, oci_images: dict[str, Path]) -> None:
    images.import_into_containerd(private_containerd, "harness-test", oci_images["leak"])
    out = subprocess.run(
        ["ctr", "-a", private_containerd, "-n", "harness-test", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert images.LEAK_IMAGE in out
    assert images.image_name("leak", "latest") in out
    check = subprocess.run(
        ["ctr", "-a", private_containerd, "-n", "harness-test", "images", "check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "complete" in check
