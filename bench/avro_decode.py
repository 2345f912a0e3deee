"""Avro decode throughput, in-process (no Kafka): Confluent-framed values (magic byte, 4-byte
schema id, Avro body) of the same order event the other benchmarks use.

    python bench/avro_decode.py [--records 200000] [--json]

Rows:
  fastavro schemaless_reader loop        the bare loop: one dict per message, nothing else
  fastavro loop + Table.from_pylist      the least an Arrow-producing decoder has to do that way
  lake-ingest                            ingest_core.source.avro's AvroDecoder.decode, when that module exists
                                         (Confluent framing, grouping by schema id, Arrow table out)
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SCHEMA = {
    "type": "record", "name": "Order", "namespace": "bench",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "order_id", "type": "long"},
        {"name": "customer_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "status", "type": "string"},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "tier", "type": "string"}, {"name": "country", "type": "string"},
            {"name": "since", "type": "int"}]}},
        {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}, {"name": "price", "type": "double"}]}}},
        {"name": "created_at", "type": "string"},
        {"name": "note", "type": "string"},
    ],
}
SCHEMA_ID = 1


def framed_values(count: int) -> list[bytes]:
    from fastavro import parse_schema, schemaless_writer

    parsed = parse_schema(SCHEMA)
    factory = common.EventFactory(1024)
    header = b"\x00" + struct.pack(">I", SCHEMA_ID)
    values = []
    for i in range(count):
        buffer = io.BytesIO()
        schemaless_writer(buffer, parsed, json.loads(factory.event(i)))
        values.append(header + buffer.getvalue())
    return values


def fastavro_loop(values: list[bytes]) -> list[dict]:
    from fastavro import parse_schema, schemaless_reader

    parsed = parse_schema(SCHEMA)
    return [schemaless_reader(io.BytesIO(v[5:]), parsed) for v in values]


def fastavro_to_arrow(values: list[bytes]):
    import pyarrow as pa

    return pa.Table.from_pylist(fastavro_loop(values))


def timed(name: str, function, values: list[bytes], repeat: int = 3) -> dict:
    total = sum(len(v) for v in values)
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        function(values)
        best = min(best, time.perf_counter() - began)
    return {"name": name, "records_per_s": round(len(values) / best), "mb_per_s": round(total / best / 1e6, 1),
            "seconds": round(best, 3)}


class _OneSchemaRegistry:
    """Stands in for confluent-kafka's SchemaRegistryClient: serves SCHEMA under SCHEMA_ID, so
    the benchmark times decoding, not HTTP (the real client caches the schema after one call)."""

    def get_schema(self, schema_id: int, fmt: str | None = None):
        from types import SimpleNamespace

        if schema_id != SCHEMA_ID:
            raise KeyError(schema_id)
        return SimpleNamespace(schema_str=json.dumps(SCHEMA), schema_type="AVRO", references=[])


def lake_ingest_row(values: list[bytes]) -> dict:
    name = "lake-ingest AvroDecoder.decode (ingest_core.source.avro, to an Arrow table)"
    if importlib.util.find_spec("ingest_core") is None:
        return {"name": name, "todo": "TODO: ingest_core is not importable from this Python; no number"}
    if importlib.util.find_spec("ingest_core.source.avro") is None:
        return {"name": name, "todo": f"TODO: ingest_core.source.avro does not exist at {common.git_revision()} "
                                      "(Avro decoding is being written); no number yet"}
    try:
        from ingest_core.source.avro import AvroDecoder

        decoder = AvroDecoder({"url": "http://schema-registry.invalid"}, client=_OneSchemaRegistry())
        decoded = decoder.decode(values[:100])
        if decoded.rejects or decoded.table.num_rows != 100:
            raise RuntimeError(f"rejected {len(decoded.rejects)} of 100: {list(decoded.rejects.values())[:1]}")
    except Exception as error:  # noqa: BLE001 - the module is young; say why there is no number
        return {"name": name, "todo": f"TODO: ingest_core.source.avro is there but could not be driven "
                                      f"({type(error).__name__}: {str(error)[:200]}); no number"}
    return timed(name, decoder.decode, values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print one JSON line (for bench/run.py)")
    args = parser.parse_args(argv)
    values = framed_values(args.records)
    rows = [
        timed("fastavro schemaless_reader loop (dicts)", fastavro_loop, values),
        timed("fastavro loop + pyarrow Table.from_pylist", fastavro_to_arrow, values),
        lake_ingest_row(values),
    ]
    result = {"records": args.records, "mean_value_bytes": round(sum(map(len, values)) / len(values)), "rows": rows}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.records:,} Confluent-framed Avro values, {result['mean_value_bytes']} B each (best of 3)")
        for row in rows:
            if "records_per_s" in row:
                print(f"  {row['name']:<45} {row['records_per_s']:>10,} records/s  {row['mb_per_s']:7.1f} MB/s")
            else:
                print(f"  {row['name']:<45} {row['todo']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
