"""kmsg record parsing and OOM-kill joining, on a real capture from this host and lab-host shapes."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from harness.sample import kmsg, oomwatch
from harness.sample.kmsg import (
    KmsgClock,
    KmsgFollower,
    OomKill,
    OomParser,
    parse_dmesg_line,
    parse_kmsg_text,
    parse_oom_kills,
    parse_record,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "kmsg"
KiB = 1024


def kills_of(name: str) -> list[OomKill]:
    return parse_oom_kills(parse_kmsg_text((FIX / name).read_text()))


def test_doctests() -> None:
    for mod in (kmsg, oomwatch):
        assert doctest.testmod(mod).failed == 0, mod.__name__


# ------------------------------------------------------------------ records


def test_parse_record_fields() -> None:
    r = parse_record(b"3,423,369288736,-;Memory cgroup out of memory: Killed process 5818 (python3)")
    assert r is not None
    assert (r.prio, r.level, r.facility, r.seq, r.ts_usec, r.flags) == (3, 3, 0, 423, 369288736, "-")
    assert r.message.startswith("Memory cgroup out of memory")


def test_parse_record_continuation_and_extra_prefix_fields() -> None:
    raw = "12,7,99,c,caller=T42;usb 1-1: new device\n SUBSYSTEM=usb\n DEVICE=c189:1\n"
    r = parse_record(raw)
    assert r is not None
    assert r.facility == 1 and r.level == 4
    assert r.flags == "c" and r.extra == ("caller=T42",)
    assert r.message == "usb 1-1: new device"
    assert r.fields == {"SUBSYSTEM": "usb", "DEVICE": "c189:1"}


def test_parse_record_unescapes_and_rejects_garbage() -> None:
    r = parse_record("6,1,2,-;tab\\x09here")
    assert r is not None and r.message == "tab\there"
    assert parse_record("no header here") is None
    assert parse_record("a,b,c,-;x") is None
    assert parse_record("6,1;x") is None


def test_parse_kmsg_text_attaches_continuations() -> None:
    recs = parse_kmsg_text("6,1,10,-;first\n SUBSYSTEM=mem\n6,2,20,-;second\n")
    assert [r.message for r in recs] == ["first", "second"]
    assert recs[0].fields == {"SUBSYSTEM": "mem"}


def test_parse_dmesg_line() -> None:
    r = parse_dmesg_line("[   81.674970] memory: usage 481280kB, limit 481280kB, failcnt 9260")
    assert r is not None and r.ts_usec == 81674970 and r.message.startswith("memory: usage")
    assert parse_dmesg_line("no timestamp") is None


# ------------------------------------------------------------------ real capture (this host)


def test_real_v1_memcg_kill_captured_here() -> None:
    recs = parse_kmsg_text((FIX / "memcg_oom_v1_debian12_k6.18.raw").read_text())
    assert len(recs) == 79
    (k,) = parse_oom_kills(recs)
    assert k.pid == 5818 and k.comm == "python3"
    assert k.scope == "memcg" and not k.is_global
    assert k.constraint == "CONSTRAINT_MEMCG"
    assert k.oom_memcg == k.task_memcg == "/harness-test-capture"
    assert (k.cpuset, k.mems_allowed, k.uid) == ("/", "0", 0)
    assert k.oom_score_adj == 0
    assert k.total_vm == 58716 * KiB
    assert (k.anon_rss, k.file_rss, k.shmem_rss, k.pgtables) == (48756 * KiB, 6616 * KiB, 0, 148 * KiB)
    assert (k.invoker_comm, k.invoker_pid, k.invoker_oom_score_adj) == ("python3", 5818, 0)
    assert k.gfp_mask == "0xcc0(GFP_KERNEL)" and k.order == 0
    assert k.ts_usec == 369288736 and k.invoked_ts_usec == 369284821 and k.seq == 423
    assert k.kernel_format == "modern"


# ------------------------------------------------------------------ lab-host shapes


def test_v2_systemd_container_kill() -> None:
    (k,) = kills_of("memcg_oom_v2_systemd_k6.8.kmsg")
    scope = (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a1f0c52_3b4e_4d2a_9f1e_2b7c8d9e0a11.slice/"
        "cri-containerd-8d0b2f74a1c3e5f60718293a4b5c6d7e8f9012345678901234567890abcdef12.scope"
    )
    assert k.task_memcg == k.oom_memcg == scope
    assert (k.pid, k.comm, k.uid, k.oom_score_adj) == (734121, "leak", 65532, 984)
    assert k.mems_allowed == "0-1"
    assert k.cpuset is not None and k.cpuset.startswith("cri-containerd-")
    assert k.scope == "memcg"
    assert k.anon_rss == 521216 * KiB


def test_v2_kubepods_kill_of_other_container() -> None:
    (k,) = kills_of("kubepods_oom_v2_systemd_k6.1.kmsg")
    assert k.oom_memcg == "/kubepods.slice"
    assert k.task_memcg is not None and k.task_memcg.startswith("/kubepods.slice/kubepods-besteffort.slice/")
    assert k.invoker_comm == "stress" and k.invoker_pid == 20481
    assert (k.pid, k.comm) == (20460, "idle-victim")
    assert k.gfp_mask == "0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)"
    assert k.invoker_oom_score_adj == 1000 and k.oom_score_adj == 1000


def test_global_oom() -> None:
    (k,) = kills_of("global_oom_v2_k5.15.kmsg")
    assert k.is_global and k.scope == "global"
    assert k.constraint == "CONSTRAINT_NONE"
    assert k.oom_memcg is None
    assert k.task_memcg == "/system.slice/leaky.service"
    assert (k.pid, k.comm, k.uid) == (4242, "leaky daemon", 998)
    assert k.invoker_comm == "kworker/u16:3"


def test_legacy_format() -> None:
    (k,) = kills_of("legacy_oom_k4.4.kmsg")
    assert k.kernel_format == "legacy"
    assert k.task_memcg == k.oom_memcg == "/docker/4b1e2f0c9a8d"
    assert (k.pid, k.comm) == (13536, "memorymonster")
    assert k.scope == "memcg"  # from the "Memory cgroup out of memory: Kill process" decision line
    assert k.shmem_rss is None and k.oom_score_adj is None  # not printed by 4.4
    assert (k.anon_rss, k.file_rss) == (920 * KiB, 452 * KiB)
    assert k.cpuset == "/"


def test_legacy_task_line_different_cgroups() -> None:
    p = OomParser()
    for i, msg in enumerate(
        [
            "x invoked oom-killer: gfp_mask=0x24000c0, order=0, oom_score_adj=0",
            "Task in /kubepods/pod1/c1 killed as a result of limit of /kubepods",
            "Out of memory: Kill process 7 (x) score 999 or sacrifice child",
        ]
    ):
        assert p.feed(parse_record(f"6,{i},{i},-;{msg}")) == []  # type: ignore[arg-type]
    (k,) = p.feed(parse_record("3,9,9,-;Killed process 7 (x) total-vm:10kB, anon-rss:4kB, file-rss:0kB"))  # type: ignore[arg-type]
    assert (k.task_memcg, k.oom_memcg) == ("/kubepods/pod1/c1", "/kubepods")
    assert k.scope == "global"  # "Out of memory:" prefix


@pytest.mark.parametrize(
    "name", ["foo", "python3.4", "Plex Media Server", "x86_64-pc-linux-gnu-c++-5.4.0", "()", '"q"']
)
def test_killed_line_odd_comms(name: str) -> None:
    line = f"6,1,5,-;Memory cgroup out of memory: Killed process 1234 ({name}) total-vm:8kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:-997"
    (k,) = parse_oom_kills([parse_record(line)])  # type: ignore[list-item]
    assert (k.pid, k.comm, k.oom_score_adj) == (1234, name, -997)
    assert k.kernel_format == "bare"


def test_several_kills_in_a_row_and_stale_summary_dropped() -> None:
    text = (FIX / "memcg_oom_v2_systemd_k6.8.kmsg").read_text() + (
        FIX / "global_oom_v2_k5.15.kmsg"
    ).read_text()
    kills = kills_of_text(text)
    assert [k.pid for k in kills] == [734121, 4242]
    # a constraint line for pid 1 followed by a kill of pid 2: the summary is not misattributed
    p = OomParser()
    p.feed(parse_record("4,1,1,-;a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"))  # type: ignore[arg-type]
    p.feed(
        parse_record(
            "6,2,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=a,pid=1,uid=0"
        )
    )  # type: ignore[arg-type]
    (k,) = p.feed(parse_record("3,3,3,-;Memory cgroup out of memory: Killed process 2 (b) total-vm:8kB"))  # type: ignore[arg-type]
    assert k.pid == 2 and k.task_memcg is None and k.invoker_comm == "a" and k.scope == "memcg"


def kills_of_text(text: str) -> list[OomKill]:
    return parse_oom_kills(parse_kmsg_text(text))


def test_no_killable_processes_resets() -> None:
    p = OomParser()
    p.feed(parse_record("4,1,1,-;a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"))  # type: ignore[arg-type]
    p.feed(
        parse_record(
            "6,2,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=a,pid=1,uid=0"
        )
    )  # type: ignore[arg-type]
    p.feed(parse_record("3,3,3,-;Out of memory and no killable processes..."))  # type: ignore[arg-type]
    (k,) = p.feed(parse_record("3,4,4,-;Out of memory: Killed process 9 (z) total-vm:8kB"))  # type: ignore[arg-type]
    assert k.invoker_comm is None and k.task_memcg is None and k.scope == "global"


def test_oom_reaper_is_not_a_kill() -> None:
    line = "6,5,5,-;oom_reaper: reaped process 734121 (leak), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"
    assert parse_oom_kills([parse_record(line)]) == []  # type: ignore[list-item]


# ------------------------------------------------------------------ clock and follower (no device)


def test_clock_passive_offset_is_min_delay() -> None:
    c = KmsgClock()
    c.observe(1_000_000, 1.004)
    c.observe(2_000_000, 2.001)
    c.observe(3_000_000, 3.010)
    assert c.passive_offset == pytest.approx(0.001)
    assert c.to_mono(5_000_000) == pytest.approx(5.001)


def test_follower_handle_stamps_times() -> None:
    f = KmsgFollower()
    try:
        seen: list[OomKill] = []
        f.on_kill = seen.append
        lines = (FIX / "memcg_oom_v1_debian12_k6.18.raw").read_text().splitlines()
        out: list[OomKill] = []
        for i, line in enumerate(lines):
            t = 369.3 + i * 1e-4
            out += f.handle(line.encode(), t, 1_700_000_000.0 + t)
        (k,) = out
        assert seen == [k]
        assert k.t_mono_received is not None and k.t_mono is not None and k.t_wall is not None
        assert k.t_mono == pytest.approx(k.ts_usec / 1e6 + f.clock.offset)
        assert k.t_wall - k.t_mono == pytest.approx(1_700_000_000.0)
        assert f.kills == [k]
    finally:
        f.stop()


# kubelet 1.33 on cgroup v2 sets memory.oom.group on containers: Debian's 6.1 kernel in a VM lab
# host printed the victim's "Killed process" line twice (dmesg of `harness lab`, S1 on the kubelet)
OOM_GROUP_DMESG = """\
[ 1604.209950] leak invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=992
[ 1604.215958] CPU: 0 PID: 2167 Comm: leak Not tainted 6.1.0-57-cloud-amd64 #1  Debian 6.1.192-3
[ 1604.259214] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=825fd738e32f,mems_allowed=0-1,\
oom_memcg=/kubepods/burstable/pod8bf6e4e4,task_memcg=/kubepods/burstable/pod8bf6e4e4/825fd738e32f,task=leak,pid=2167,uid=0
[ 1604.260546] Memory cgroup out of memory: Killed process 2167 (leak) total-vm:1049712kB, anon-rss:130344kB, \
file-rss:756kB, shmem-rss:0kB, UID:0 pgtables:288kB oom_score_adj:992
[ 1604.269323] Tasks in /kubepods/burstable/pod8bf6e4e4/825fd738e32f are going to be killed due to memory.oom.group set
[ 1604.269662] Memory cgroup out of memory: Killed process 2167 (leak) total-vm:1049712kB, anon-rss:130344kB, \
file-rss:756kB, shmem-rss:0kB, UID:0 pgtables:288kB oom_score_adj:992
[ 1604.269700] Memory cgroup out of memory: Killed process 2170 (leak) total-vm:1049712kB, anon-rss:1000kB, \
file-rss:756kB, shmem-rss:0kB, UID:0 pgtables:288kB oom_score_adj:992
"""


def test_oom_group_repeats_the_victim_once_and_keeps_the_cgroup_of_the_others() -> None:
    recs = [r for ln in OOM_GROUP_DMESG.splitlines() if (r := kmsg.parse_dmesg_line(ln)) is not None]
    kills = kmsg.parse_oom_kills(recs)
    assert [k.pid for k in kills] == [2167, 2170]
    victim, member = kills
    assert victim.oom_memcg == "/kubepods/burstable/pod8bf6e4e4" and victim.kernel_format == "modern"
    assert member.scope == "memcg" and member.kernel_format == "oom_group"
    assert member.oom_memcg == "/kubepods/burstable/pod8bf6e4e4"
    assert member.task_memcg == "/kubepods/burstable/pod8bf6e4e4/825fd738e32f"
