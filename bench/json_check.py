"""What checking that each value is JSON costs, by library: the check lake-ingest makes before a
value lands (one JSON object per value, valid UTF-8, no duplicate key, within decode.max_depth)
and the other ways to check, some of which leave a rule out. No Kafka, and of ingest_core only
json_validator.c (loaded from this work tree's build): one batch of the bench's values (65,000 x 1 KiB, or 200 B with --small), each way timed alone on one core, best of 3.

    python bench/json_check.py [--small] [--records N]

Runs in the competitors' virtualenv (bench/common.py; pysimdjson, msgspec, orjson and jiter are
installed there from deploy/bench-constraints.txt), so none of them is a dependency of the
project. Each row says which of the rules the check enforces, tested on small values that break
one rule each.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SLICE_BYTES = 2 << 20  # what lake-ingest hands pyarrow.json at a time for NDJSON (source/decode.py)
BROKEN = {  # one rule broken each
    "syntax": b'{"a":1,}',
    "duplicate key": b'{"a":{"b":1,"b":2}}',
    "UTF-8": b'{"a":"\xff"}',
    "object": b"[1]",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="200-byte values")
    parser.add_argument("--records", type=int, default=65_000)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # already in the virtualenv
    args = parser.parse_args(argv)
    if not args.inside:
        venv = common.competitor_venv()
        command = [str(common.venv_python(venv)), __file__, "--inside", "--records", str(args.records)]
        return subprocess.run(command + (["--small"] if args.small else []), env=dict(os.environ)).returncode
    return measure(200 if args.small else 1024, args.records)


def checks() -> dict:
    import jiter
    import msgspec
    import orjson
    import pyarrow as pa
    import pyarrow.json as pa_json
    import simdjson

    def arrow_slices(values: list[bytes]) -> None:
        per = max(1, SLICE_BYTES // max(1, len(values[0])))
        for start in range(0, len(values), per):
            text = b"\n".join(values[start:start + per])
            pa.array([text], pa.binary()).cast(pa.string())  # the UTF-8 check lake-ingest adds
            table = pa_json.read_json(pa.BufferReader(text), read_options=pa_json.ReadOptions(use_threads=False))
            if table.num_rows != len(values[start:start + per]):
                raise ValueError("not one object per value")

    parser = simdjson.Parser()
    raw = msgspec.json.Decoder(msgspec.Raw)

    def simdjson_objects(values):
        for value in values:
            if not isinstance(parser.parse(value), simdjson.Object):
                raise ValueError("not an object")

    def simdjson_walk(values):
        def unique(node) -> bool:
            if isinstance(node, simdjson.Object):
                if len(set(node.keys())) != len(node):
                    return False
                children = node.values()
            elif isinstance(node, simdjson.Array):
                children = node
            else:
                return True
            return all(unique(child) for child in children if isinstance(child, (simdjson.Object, simdjson.Array)))

        for value in values:
            if not unique(parser.parse(value)):
                raise ValueError("duplicate key")

    def each(function):
        def run(values):
            for value in values:
                function(value)
        return run

    validator = _json_validator()

    def c_check(values: list[bytes]) -> None:
        array = pa.array(values, pa.binary())  # a batch's values arrive as this array
        _, offsets, data = array.buffers()
        if validator.suspect_rows(data if data is not None else b"", offsets, 0, len(array), 64):
            raise ValueError("a value to look at alone")

    return {
        "json_validator.c, the whole batch (lake-ingest's NDJSON check)": c_check,
        "pyarrow.json, 2 MiB slices (lake-ingest's check before json_validator.c; Parquet's parse of a batch's first slice)": arrow_slices,
        "pysimdjson parse": simdjson_objects,
        "pysimdjson parse + Python walk for duplicate keys": simdjson_walk,
        "msgspec.json decode to Raw": each(raw.decode),
        "msgspec.json decode to dicts": each(msgspec.json.decode),
        "orjson.loads": each(orjson.loads),
        "jiter.from_json(catch_duplicate_keys=True)": each(lambda v: jiter.from_json(v, catch_duplicate_keys=True)),
        "json.loads (standard library)": each(json.loads),
    }


def _json_validator():
    """ingest_core/source/json_validator.c as built in this work tree (`pip install -e .`), loaded
    by path: nothing else of ingest_core is imported into the competitors' virtualenv."""
    import importlib.machinery
    import importlib.util

    folder = Path(__file__).resolve().parent.parent / "ingest_core" / "source"
    built = sorted(folder.glob("json_validator.*.so"))
    if not built:
        raise SystemExit("ingest_core/source/json_validator.c is not built: run `pip install -e .` first")
    loader = importlib.machinery.ExtensionFileLoader("json_validator", str(built[0]))
    spec = importlib.util.spec_from_file_location("json_validator", str(built[0]), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def rules_enforced(check) -> str:
    refused = []
    for rule, value in BROKEN.items():
        try:
            check([value])
        except Exception:  # noqa: BLE001 - any refusal counts
            refused.append(rule)
    missed = [rule for rule in BROKEN if rule not in refused]
    return "all" if not missed else "misses: " + ", ".join(missed)


def measure(size: int, records: int) -> int:
    factory = common.EventFactory(size)
    values = [factory.event(i) for i in range(records)]
    print(f"{records:,} values of {size} B; best of 3 on one core; µs per value")
    print()
    print("| check | µs per value | MB/s | rules (syntax, duplicate key, UTF-8, object) |")
    print("|---|---:|---:|---|")
    for name, check in checks().items():
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            check(values)
            best = min(best, time.perf_counter() - began)
        per = best / records * 1e6
        print(f"| {name} | {per:.2f} | {size / per:,.0f} | {rules_enforced(check)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
