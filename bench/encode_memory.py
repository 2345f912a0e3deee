"""How much memory encoding one batch takes, and how much of it the process keeps afterwards,
for each pyarrow allocator. No Kafka: one batch of 65,000 x 1 KiB JSON values (what
`max_bytes: 64MiB` cuts per partition), encoded three times by ingest_core's BatchEncoder in a
fresh child process per allocator and format, and its files' data read through as a local
publish writes it (uncompressed NDJSON text is made then); RSS from /proc/self/status (the peak is reset
before each encode through /proc/self/clear_refs).
pyarrow's own default is mimalloc; `ingest run` uses the system allocator
(allocator.use_system_allocator); this tool leaves the choice to ARROW_DEFAULT_MEMORY_POOL.

    python bench/encode_memory.py [--records 65000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALLOCATORS = [("mimalloc (pyarrow's default)", {}), ("system malloc", {"ARROW_DEFAULT_MEMORY_POOL": "system"}),
              ("jemalloc, decay 0", {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc", "DECAY_MS": "0"})]


def child(fmt: str, records: int) -> dict:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    import common
    import pyarrow as pa

    from ingest_core.batching.buffer import Batch
    from ingest_core.settings import Settings
    from ingest_core.sink.encode import BatchEncoder
    from ingest_core.sink.formats import pieces_of

    if os.environ.get("DECAY_MS"):
        pa.jemalloc_set_decay_ms(int(os.environ["DECAY_MS"]))

    def rss() -> tuple[int, int]:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024

    factory = common.EventFactory(1024)
    values = [factory.event(i) for i in range(records)]
    keys = [factory.key(i) for i in range(records)]
    batch = Batch("t", 0, 0, list(range(records)), [1_795_435_902_177 + i for i in range(records)], keys, values,
                  [None] * records, sum(map(len, values)) + sum(map(len, keys)))
    settings = Settings.model_validate({"topic": "t", "output": {"url": "file:///unused", "format": fmt,
                                                                 "compression": "none" if fmt == "ndjson" else "zstd"}})
    encoder = BatchEncoder(settings)
    result = {"batch_mib": round(batch.nbytes / 2**20), "backend": pa.default_memory_pool().backend_name, "encodes": []}
    for _ in range(3):
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
        before = rss()[0]
        began = time.process_time()
        encoded = encoder.encode(batch)
        for file in encoded.files:  # as a local publish writes them (NDJSON text is made here)
            for _piece in pieces_of(file.data):
                pass
        cpu = time.process_time() - began
        after, peak = rss()
        result["encodes"].append({"before": before, "peak": peak, "after": after, "cpu_s": round(cpu, 3)})
        del encoded
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=65_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.records)))
        return 0
    print(f"one batch of {args.records:,} x 1 KiB JSON values; RSS in MiB; 3 encodes in one process per row")
    print()
    print("| format | allocator | RSS before 1st | peak, 1st encode | after 1st | peak, 3rd | after 3rd | CPU s per encode (median) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for fmt in ("ndjson", "parquet"):
        for name, env in ALLOCATORS:
            out = subprocess.run([sys.executable, __file__, "--child", fmt, "--records", str(args.records)],
                                 env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
            r = json.loads(out)
            first, third = r["encodes"][0], r["encodes"][-1]
            cpu = sorted(e["cpu_s"] for e in r["encodes"])[1]
            print(f"| {fmt} | {name} | {first['before']} | {first['peak']} | {first['after']} | {third['peak']} | "
                  f"{third['after']} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
