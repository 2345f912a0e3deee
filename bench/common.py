"""Shared by bench/run.py, bench/soak.py and bench/profile.py: the broker, the data,
the competitors' virtualenv, running a contender as a child process, and the machine.

Nothing here is imported by ingest_core or by the tests: bench/ stands apart (no CI).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
CONSTRAINTS = REPO / "deploy" / "bench-constraints.txt"
# The competitors pin their own confluent-kafka (quixstreams 3.28 wants < 2.13), so they live in a
# virtualenv of their own, outside the repo; lake-ingest and the ceiling run on the project's Python.
# pysimdjson ... jiter: only for bench/json_check.py (JSON checks compared), never imported by lake-ingest
COMPETITOR_PACKAGES = ["quixstreams", "kafka-python", "dlt[parquet]", "pyarrow", "py-spy",
                       "pysimdjson", "msgspec", "orjson", "jiter"]
RESULT_PREFIX = "BENCH_RESULT "  # the same as contenders/bench_result.py, which the contenders import


def _cache_root() -> Path:
    if os.environ.get("LAKE_INGEST_CACHE"):
        return Path(os.environ["LAKE_INGEST_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lake-ingest"


def load_kafka_broker_module():
    """deploy/local/kafka_broker.py, loaded by path (deploy/ is not a package)."""
    return _load_local_module("kafka_broker")


def load_object_stores_module():
    """deploy/local/object_stores.py (moto's S3, Azurite), loaded by path."""
    return _load_local_module("object_stores")


def _load_local_module(name: str):
    local = str(REPO / "deploy" / "local")
    if local not in sys.path:
        sys.path.insert(0, local)  # the scripts import their neighbours (local_service.py)
    path = REPO / "deploy" / "local" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lake_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and atexit need it registered
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- competitors' virtualenv

def competitor_venv(install: bool = True) -> Path:
    """The virtualenv holding quixstreams, kafka-python, dlt and py-spy at the versions in
    deploy/bench-constraints.txt; created or refreshed when the constraints change."""
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:12] if CONSTRAINTS.exists() else "unpinned"
    venv = _cache_root() / "bench-venv"
    marker = venv / "lake-bench.json"
    try:
        if json.loads(marker.read_text())["constraints"] == digest:
            return venv
    except (OSError, ValueError, KeyError):
        pass
    if not install:
        raise RuntimeError(f"{venv} is missing or stale; run python bench/run.py --setup")
    print(f"[bench] installing the competitors into {venv} (once; pinned by {CONSTRAINTS.name})", flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if CONSTRAINTS.exists():
        pip += ["-c", str(CONSTRAINTS)]
    subprocess.run(pip + COMPETITOR_PACKAGES, check=True)
    marker.write_text(json.dumps({"constraints": digest}))
    return venv


def venv_python(venv: Path) -> str:
    return str(venv / "bin" / "python")


# ---------------------------------------------------------------- the data

_WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
          "et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip "
          "ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla "
          "pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim "
          "id est laborum").split()
_COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "US", "GB", "JP", "BR", "IN"]
_STATUSES = ["created", "paid", "packed", "shipped", "delivered", "returned"]


class EventFactory:
    """Order events of a roughly fixed size, JSON-encoded, with a stable schema (every field
    always present with the same type), so each contender can build one table per batch.

    `size` is the target length of the encoded value in bytes (1024 or 200); the padding is
    a free-text note drawn from a few hundred sentences, so compression sees realistic text."""

    def __init__(self, size: int, seed: int = 8):
        rng = random.Random(seed)
        self.size = size
        self.notes = [" ".join(rng.choice(_WORDS) for _ in range(400)) for _ in range(257)]
        self.rng = rng

    def event(self, i: int) -> bytes:
        small = self.size < 512
        body = {
            "event_id": f"ev-{i:012d}",
            "order_id": i,
            "customer_id": f"c{i % 9973:05d}",
            "amount": round((i % 100_003) * 0.37 + 0.01, 2),
            "currency": "EUR",
            "status": _STATUSES[i % len(_STATUSES)],
        }
        if not small:
            body["customer"] = {"tier": ("gold", "silver", "bronze")[i % 3], "country": _COUNTRIES[i % 12],
                                "since": 2000 + i % 26}
            body["items"] = [{"sku": f"sku-{(i * 7 + k) % 5011:05d}", "qty": 1 + (i + k) % 4,
                              "price": round(((i + k) % 997) * 1.13 + 0.5, 2)} for k in range(1 + i % 4)]
            body["created_at"] = f"2026-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z"
        body["note"] = ""
        encoded = json.dumps(body, separators=(",", ":"))  # ends with "note":""}
        room = max(0, self.size - len(encoded))
        start = (i * 31) % 200
        note = self.notes[i % len(self.notes)][start:start + room]  # plain ASCII words: nothing to escape
        return (encoded[:-2] + note + '"}').encode()

    def batch(self, total_bytes: int = 64 << 20) -> list[bytes]:
        """Events 0, 1, 2, ... making `total_bytes` of values: one full batch at the shipped batch.max_bytes."""
        return [self.event(i) for i in range(total_bytes // self.size)]

    @staticmethod
    def key(i: int) -> bytes:
        return f"c{i % 9973:05d}".encode()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=60)  # keep `admin` referenced until the futures resolve


def preload(bootstrap: str, topic: str, count: int, partitions: int, size: int, start: int = 0) -> tuple[int, float]:
    """Produce `count` events round-robin over partitions; returns (value bytes, seconds)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 4 * 1024 * 1024,
                         "queue.buffering.max.kbytes": 1024 * 1024, "queue.buffering.max.messages": 1_000_000,
                         "acks": 1, "compression.type": "none"})
    factory = EventFactory(size)
    total = 0
    began = time.monotonic()
    for i in range(start, start + count):
        value = factory.event(i)
        total += len(value)
        while True:
            try:
                producer.produce(topic, value, key=factory.key(i), partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"preload: {left} messages not delivered")
    return total, time.monotonic() - began


@contextmanager
def preloaded_broker(prefix: str, topic: str, partitions: int, count: int, size: int) -> Iterator[tuple[str, Path]]:
    """A local Kafka broker (deploy/local/kafka_broker.py) in a fresh work dir, with `topic` made and
    preloaded with `count` events of `size` bytes; yields (bootstrap, work dir), both gone afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    broker = load_kafka_broker_module().LocalKafka(workdir / "kafka").start()
    try:
        create_topic(broker.bootstrap, topic, partitions)
        preload(broker.bootstrap, topic, count, partitions, size)
        yield broker.bootstrap, workdir
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lake-bench-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1] for p in range(partitions)}
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in result}
    finally:
        consumer.close()


# ---------------------------------------------------------------- running one contender

@dataclass
class ChildRun:
    returncode: int
    spawned_at: float  # time.time() just before the child was started
    exited_at: float
    peak_rss_mib: float  # the child's VmHWM (its own memory's high-water mark), MiB
    ru_maxrss_mib: float  # os.wait4's ru_maxrss: the same, or more (see run_child)
    cpu_s: float  # user + system CPU seconds of the child
    stdout: str
    stderr: str
    result: dict = field(default_factory=dict)  # the child's BENCH_RESULT line, if any
    minor_faults: int = 0  # page faults of the child that needed no disk read (each a page the kernel handed it)


def run_child(argv: list[str], workdir: Path, name: str, env: dict | None = None, timeout: float = 1800,
              wrap: list[str] | None = None) -> ChildRun:
    """Run one contender as a child process. Its peak RSS is the high-water mark of its own
    memory (VmHWM in /proc/PID/status), read every 20 ms until it exits. Not wait4's ru_maxrss:
    on Linux a child started by vfork + exec (as subprocess does) keeps in ru_maxrss the peak of
    the memory it shared before exec, which is this harness's own (seen: a bare consume loop
    "peaking" at 442 MiB, the harness's size after checking a lake)."""
    out_path, err_path = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        spawned = time.time()
        process = subprocess.Popen((wrap or []) + argv, stdout=out, stderr=err, env=full_env, cwd=REPO)
        deadline = time.monotonic() + timeout
        high_water = 0.0
        while True:
            high_water = max(high_water, vm_hwm_mib(process.pid) or 0.0)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        exited = time.time()
        process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    result = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    return ChildRun(process.returncode, spawned, exited, high_water or usage.ru_maxrss / 1024, usage.ru_maxrss / 1024,
                    usage.ru_utime + usage.ru_stime, stdout, stderr, result, usage.ru_minflt)


def vm_hwm_mib(pid: int) -> float | None:
    """A live process's peak resident set size so far (VmHWM), from /proc (None once it is gone)."""
    return _proc_status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float | None:
    """Current resident set size of a process, from /proc (None once it is gone)."""
    return _proc_status_mib(pid, "VmRSS")


def _proc_status_mib(pid: int, field: str) -> float | None:
    """One kB field of /proc/PID/status, in MiB (None once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- counting what landed

def count_rows(folder: Path, suffixes: tuple[str, ...]) -> tuple[int, int]:
    """(rows, files) in the data files under `folder`; hidden and internal (`.`/`_`) names skipped."""
    import fsspec

    rows, files, _ = count_rows_in(fsspec.filesystem("file"), str(folder), suffixes)
    return rows, files


def count_rows_in(fs, root: str, suffixes: tuple[str, ...]) -> tuple[int, int, int]:
    """(rows, files, bytes of every file) under `root` of an fsspec filesystem: rows of the data files
    (Parquet footers, NDJSON lines) whose names end in `suffixes`, hidden and internal (`.`/`_`) names
    skipped."""
    import pyarrow.parquet as pq

    rows = files = size = 0
    for path, info in sorted(fs.find(root, detail=True).items()):
        size += int(info.get("size") or 0)
        relative = path[len(root.rstrip("/")):].strip("/").split("/")
        if any(part.startswith((".", "_")) for part in relative) or not path.endswith(suffixes):
            continue
        files += 1
        if path.endswith(".parquet"):
            with fs.open(path, "rb") as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
        else:
            with fs.open(path, "rb") as handle:
                rows += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 22), b""))
    return rows, files, size


# ---------------------------------------------------------------- the machine

def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": memory_gib, "python": platform.python_version(),
            "kernel": platform.release(), "java": _java_version()}


def _java_version() -> str:
    java = shutil.which("java")
    if not java:
        return "none"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20).stderr
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions(venv: Path | None) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("confluent-kafka", "pyarrow", "fastavro", "lake-ingest"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    try:
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    if venv is not None:
        code = ("import json\nfrom importlib.metadata import version\n"
                "print(json.dumps({n: version(n) for n in ['quixstreams','kafka-python','dlt','confluent-kafka','pyarrow','py-spy']}))")
        out = subprocess.run([venv_python(venv), "-c", code], capture_output=True, text=True)
        if out.returncode == 0:
            for name, value in json.loads(out.stdout).items():
                versions[f"{name} (competitors' venv)" if name in ("confluent-kafka", "pyarrow") else name] = value
    return versions


def replace_section(name: str, body: str) -> Path:
    """Put `body` between the `<!-- bench:NAME start/end -->` markers of bench/RESULTS.md (or
    append it with markers), leaving the hand-written text around it alone."""
    path = BENCH / "RESULTS.md"
    start, end = f"<!-- bench:{name} start -->", f"<!-- bench:{name} end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def git_revision(rev: str | None = None) -> str:
    """The revision of ingest_core being measured: `rev` resolved, or HEAD plus a note when
    the work tree's ingest_core differs from it."""
    try:
        resolved = subprocess.run(["git", "rev-parse", "--short", rev or "HEAD"], cwd=REPO, capture_output=True,
                                  text=True).stdout.strip()
        if rev:
            return resolved
        dirty = subprocess.run(["git", "status", "--porcelain", "ingest_core"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        return resolved + (" + uncommitted changes in ingest_core" if dirty else "")
    except OSError:
        return "unknown"


def ingest_core_source(rev: str | None, workdir: Path, folder: str = "src") -> Path:
    """The folder to put first on PYTHONPATH: with `rev`, a copy of ingest_core as committed at
    rev (git archive) in workdir/folder; without, this work tree (not whatever `pip install -e` pointed at)."""
    if not rev:
        return REPO
    target = workdir / folder
    target.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "ingest_core"], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    build_c_extensions(target / "ingest_core")
    return target


def build_c_extensions(package: Path) -> None:
    """Compiles each C module of a copied package in place, as `pip install` would (-O2)."""
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for source in package.rglob("*.c"):
        target = source.with_name(source.stem + suffix)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)], check=True)
