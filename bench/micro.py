"""Micro-measurements behind the hot-path recommendations in bench/RESULTS.md: the pieces of
one 1 KiB-JSON batch (65,000 values, ≈ 64 MiB: what max_bytes cuts per partition), each timed
alone, next to the cheaper alternative proposed for it. No Kafka, no ingest_core.

    python bench/micro.py [--records 65000] [--small]
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=65_000)
    parser.add_argument("--small", action="store_true", help="200-byte values")
    args = parser.parse_args(argv)
    factory = common.EventFactory(200 if args.small else 1024)
    values = [factory.event(i) for i in range(args.records)]
    buffer = b"\n".join(values)
    block = pa_json.ReadOptions(block_size=1 << 20)
    print(f"{args.records:,} values, {len(buffer) / 2**20:.1f} MiB joined; best of 3, milliseconds per batch")

    def timed(name: str, function, repeat: int = 3):
        best, result = float("inf"), None
        for _ in range(repeat):
            began = time.perf_counter()
            result = function()
            best = min(best, time.perf_counter() - began)
        print(f"  {name:<72} {best * 1000:8.1f}")
        return result

    print("decode (decode.py)")
    timed('b"\\n".join(values)', lambda: b"\n".join(values))
    table = timed("read_json, types inferred (today's first parse)", lambda: pa_json.read_json(io.BytesIO(buffer), block))
    text_schema = pa.schema([f.with_type(pa.string()) if pa.types.is_timestamp(f.type) else f for f in table.schema])
    timed("read_json, explicit schema with timestamps as text (today's second parse)",
          lambda: pa_json.read_json(io.BytesIO(buffer), block, pa_json.ParseOptions(
              explicit_schema=text_schema, unexpected_field_behavior="infer")))
    timed("read_json, empty explicit schema, fields ignored (validation only)",
          lambda: pa_json.read_json(io.BytesIO(buffer), block, pa_json.ParseOptions(
              explicit_schema=pa.schema([]), unexpected_field_behavior="ignore")).num_rows)
    timed('b"-NaN" in buffer', lambda: b"-NaN" in buffer)
    timed("buffer.isascii()", lambda: buffer.isascii())
    timed("per-message 'odd value' list comprehension (today)",
          lambda: [i for i, v in enumerate(values) if v is None or v[:1] != b"{" or b"\n" in v or b"\r" in v])
    timed('vectorised: buffer.count(b"\\n") and pc.starts_with(pa.array(values), "{")',
          lambda: (buffer.count(b"\n"), pc.all(pc.starts_with(pa.array(values, pa.binary()), "{"))))
    print("encode (encode.py, paths.py, formats/)")
    positions = pa.array(range(len(values)), pa.int64())
    timed("table.take(range(n)) (one folder: a copy of everything)", lambda: table.take(positions))
    stamps = pa.array([1_795_435_902_177 + 7 * i for i in range(len(values))], pa.timestamp("ms", tz="UTC"))
    timed('pc.strftime per row, "dt=%Y-%m-%d/hour=%H" (today)', lambda: pc.strftime(stamps, format="dt=%Y-%m-%d/hour=%H"))
    timed("floor_temporal(hour) + unique + strftime of the distinct hours",
          lambda: pc.strftime(pc.unique(pc.floor_temporal(stamps, unit="hour")), format="dt=%Y-%m-%d/hour=%H"))
    timed("pc.strftime per row of _timestamp + to_pylist (NDJSON today)",
          lambda: pc.strftime(stamps.cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%S.%fZ").to_pylist())
    offsets = list(range(len(values)))
    keys = [factory.key(i).decode() for i in range(len(values))]
    import json

    texts = pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%S").to_pylist()
    prefixes = timed("per-row f-string metadata prefix with json.dumps(key) (NDJSON today)", lambda: [
        f'{{"_topic":"t","_partition":0,"_offset":{o},"_timestamp":"{t}.000Z","_key":{json.dumps(k)}'.encode()
        for o, t, k in zip(offsets, texts, keys)])
    timed("per-row splice + b''.join (NDJSON today)", lambda: b"".join(
        p + b"," + v.strip()[1:-1].strip() + b"}\n" for p, v in zip(prefixes, values)))
    prefix_array = pa.array(prefixes, pa.binary())
    value_array = pa.array(values, pa.binary())
    timed("vectorised splice: binary_slice + binary_join_element_wise",
          lambda: pc.binary_join_element_wise(prefix_array, pc.binary_slice(value_array, 1, 2**31 - 1),
                                              pa.scalar(b",", pa.binary())))  # stop=None fails in pyarrow 26
    timed("vectorised timestamps: strftime of distinct seconds, taken back per row",
          lambda: _iso_millis(stamps, pa, pc))
    return 0


def _iso_millis(stamps, pa, pc):
    """'2026-11-23T12:00:00.123Z' per row, formatting only the distinct seconds."""
    seconds = pc.floor_temporal(stamps, unit="second")
    distinct = pc.unique(seconds)
    text = pc.strftime(distinct, format="%Y-%m-%dT%H:%M:%S.")
    per_row = pc.take(text, pc.index_in(seconds, value_set=distinct))
    millis = pc.subtract(stamps.cast(pa.int64()), seconds.cast(pa.int64()))
    digits = pc.utf8_lpad(pc.cast(millis, pa.string()), width=3, padding="0")
    return pc.binary_join_element_wise(per_row, digits, pa.scalar("Z"), pa.scalar(""))


if __name__ == "__main__":
    sys.exit(main())
