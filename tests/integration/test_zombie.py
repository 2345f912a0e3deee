"""A zombie: a member paused (SIGSTOP) past its session while it holds a buffered batch, its
partitions taken over and committed by another member, then resumed. It must not rewrite, add
or commit anything: the test reads the lake (names, mtimes, bytes) and the broker's committed
offsets, never our log."""
from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

from ingest_core.sink.storage import LakeStore

from .group_view import GroupView
from .lake import create_topic, ingest, produce_events, wait_for, write_config
from .test_fleet import free_port, metrics

pytestmark = pytest.mark.slow

PARTITIONS = 4
MESSAGES = 800


def member_config(folder: Path, topic: str, bootstrap: str, lake_url: str) -> tuple[Path, int]:
    folder.mkdir()
    config = write_config(folder, topic, bootstrap, lake_url, batch={"max_records": 100_000, "max_age": "4s"})
    port = free_port()
    config.write_text(config.read_text().replace("http: {port: 0}", f"http: {{port: {port}}}"))
    return config, port


def metric(port: int, name: str) -> float:
    return sum(v for (n, _), v in metrics(port).items() if n == name)


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under the lake (hidden and internal ones included): mtime and content hash."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_resumed_zombie_rewrites_adds_and_commits_nothing(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, PARTITIONS)
    root = tmp_path / "lake"
    url = f"file://{root}"
    zombie_config, zombie_port = member_config(tmp_path / "zombie", topic_name, kafka.bootstrap, url)
    owner_config, owner_port = member_config(tmp_path / "owner", topic_name, kafka.bootstrap, url)
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, PARTITIONS)
    zombie = ingest("run", str(zombie_config), "--log-format", "json")
    owner = None
    try:
        wait_for("the zombie to own every partition", lambda: metric(zombie_port, "ingest_assigned_partitions") == PARTITIONS,
                 every=0.1)
        produce_events(kafka.bootstrap, topic_name, MESSAGES, PARTITIONS)
        # Every message is in the zombie's buffers and nothing is published yet (max_age 4 s): stop it there.
        wait_for("the zombie to buffer every message",
                 lambda: metric(zombie_port, "ingest_consumed_messages_total") == MESSAGES, timeout=4, every=0.02)
        zombie.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        assert not [p for p in root.rglob("*.parquet")], "the zombie published before it was stopped"

        owner = ingest("run", str(owner_config), "--log-format", "json")
        everything = {p: MESSAGES // PARTITIONS for p in range(PARTITIONS)}
        wait_for("the owner to land and commit every partition", lambda: group.committed() == everything,
                 timeout=90, every=0.5)
        assert time.monotonic() - stopped_at > 6, "the zombie's session (6 s) must have expired"
        members = group.members()
        assert len(members) == 1 and members[0][1] == tuple(range(PARTITIONS)), members
        before = snapshot(root)
        assert any(name.endswith(".parquet") for name in before)

        zombie.send_signal(signal.SIGCONT)  # its buffered batch is past max_age: a zombie would publish it now
        wait_for("the zombie to rejoin", lambda: len(group.members()) == 2, timeout=60, every=0.5)
        wait_for("the zombie to drop what it held",
                 lambda: metric(zombie_port, "ingest_buffered_bytes") == 0 and
                 metric(zombie_port, "ingest_assigned_partitions") > 0, timeout=30, every=0.1)
        assert snapshot(root) == before, "the lake changed after the zombie resumed"
        assert group.committed() == everything

        for process in (zombie, owner):
            process.send_signal(signal.SIGTERM)
        for process in (zombie, owner):
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err[-3000:]
        assert snapshot(root) == before, "the lake changed when the zombie stopped"
        assert group.committed() == everything
        assert sorted(LakeStore.open(url).list_files()) == sorted(before)
    finally:
        for process in (zombie, owner):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()
