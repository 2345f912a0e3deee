"""Decoding a batch of raw values into an Arrow table of rows, or dead-letter reasons.

Formats: `json` (one object per message), `raw` (the value bytes as they are), and the
Confluent wire formats read with schemas from a schema registry (registry.py): `avro`
(avro.py), `json_schema` (json_schema.py) and `protobuf` (protobuf.py). Tombstones (no value) follow `decode.tombstones`:
dead-letter them (default), skip and count them, or land them as a row whose payload
columns are all null.

When the rows are needed as columns (Parquet output, or folders from payload fields), the JSON
hot path parses the whole batch in one call (pyarrow.json reading the values as lines), or for
Parquet output of a large batch in slices: the first by pyarrow.json, which infers the types,
the others in C straight into that schema (json_columns.c, json_table.py); only
when that fails, or when its result could have lost something (a number pyarrow turned into
an inexact double, a string it turned into a timestamp, nesting beyond `decode.max_depth`:
json_checks.py), are messages parsed one by one (json_message.py), to isolate the bad ones
and to type the rest without losing a value (arrow/schema.py). Otherwise (NDJSON output, which
writes each value's text as it is) nothing is parsed: json_validator.c checks the batch in one
pass, and only the values it flags are parsed one by one.

A message is rejected (dead-lettered) only for what it is: invalid UTF-8 or JSON,
duplicate keys (ambiguous: which value is the field?), not an object, nested too deep.
What the decoder's dependencies do (a schema registry that is down) never rejects a
message: it raises `DecodeUnavailable`, and the batch is retried.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ingest_core.arrow.binary import LinesReader, lines_text, values_buffer
from ingest_core.arrow.schema import rows_to_table, schema_has, type_depth
from ingest_core.source.decoded import Decoded, NotSliceable, as_binary_array, decode_raw
from ingest_core.source.json_checks import (
    checked_text,
    may_have_lost,
    plain_lines,
    slice_rows,
    timestamps_as_text,
)
from ingest_core.source.json_message import normalise, parse_each
from ingest_core.source.json_table import table_of

_MIN_BLOCK = 1 << 20
TOMBSTONE_REASON = "tombstone: the message has no value"
_SAMPLE_ROWS = 1000


_WIRE_FORMATS = ("avro", "json_schema", "protobuf")  # decode.format values read through a schema registry


def _wire_decoder_class(fmt: str) -> Any:
    """The registry-backed decoder of a Confluent wire format, imported only when used."""
    if fmt == "avro":
        from ingest_core.source.avro import AvroDecoder

        return AvroDecoder
    if fmt == "json_schema":
        from ingest_core.source.json_schema import JsonSchemaDecoder

        return JsonSchemaDecoder
    from ingest_core.source.protobuf import ProtobufDecoder

    return ProtobufDecoder


class Decoder:
    """Decodes batches for one consumer; holds what outlives a batch (the Avro schema cache)."""

    def __init__(
        self,
        fmt: str = "json",
        tombstones: str = "dead_letter",
        max_depth: int = 64,
        schema_registry: dict | None = None,
        registry_client=None,
        text_only: bool = False,
    ):
        if fmt not in ("json", "raw", *_WIRE_FORMATS):
            raise ValueError(f"decode.format {fmt!r} is not known")
        self.format = fmt
        self.tombstones = tombstones
        self.max_depth = max_depth
        self.text_only = text_only  # JSON rows are written as their text: see decode_json
        # One whole-batch JSON parse at a time over the publisher threads: pyarrow.json already
        # spreads one parse over every core, and two at once only held two parsers' memory
        # (measured: 30-40 MiB less peak RSS with one, the same throughput; bench/RESULTS.md).
        self.whole_parse = threading.Lock()
        self.wire: Any = None  # the registry-backed decoder of a Confluent wire format
        if fmt in _WIRE_FORMATS:
            self.wire = _wire_decoder_class(fmt)(schema_registry or {}, client=registry_client)

    @classmethod
    def from_settings(cls, decode, text_only: bool = False) -> Decoder:
        return cls(decode.format, decode.tombstones, decode.max_depth, decode.schema_registry, text_only=text_only)

    def decode(self, values: pa.Array | list[bytes | None]) -> Decoded:
        values = as_binary_array(values)
        rejects: dict[int, str] = {}
        skipped = 0
        positions: list[int] | None = None
        if self.tombstones != "row" and values.null_count:
            present = values.is_valid()
            positions = pc.indices_nonzero(present).to_pylist()
            for index in pc.indices_nonzero(pc.invert(present)).to_pylist():
                if self.tombstones == "skip":
                    skipped += 1
                else:
                    rejects[index] = TOMBSTONE_REASON
            values = values.filter(present)
        decoded = self._decode_present(values)
        if positions is not None:
            decoded.kept = [positions[i] for i in decoded.kept]
            decoded.rejects = {positions[i]: reason for i, reason in decoded.rejects.items()}
        decoded.rejects.update(rejects)
        decoded.skipped = skipped
        return decoded

    def decode_in_slices(self, values: pa.Array | list[bytes | None]) -> Iterator[pa.Table] | None:
        """For Parquet: the table `decode()` gives, one slice of rows at a time
        (`PARSE_SLICE_BYTES` of text each), so that no table of the whole batch is held; None
        when the batch is not one for this (not JSON, NDJSON output, a tombstone or a value
        that needs a look of its own, or a single slice). Every message is kept, none
        rejected. Iterating raises `NotSliceable` when a slice does not parse with the
        first slice's schema or could have lost something: then `decode()` the batch."""
        if self.format != "json" or self.text_only:
            return None
        lines = plain_lines(as_binary_array(values))
        if lines is None:
            return None
        step = slice_rows(lines, PARSE_SLICE_BYTES)
        if step >= len(lines):
            return None
        return _checked_slices(lines, step, self.max_depth)

    def _decode_present(self, values: pa.Array) -> Decoded:
        """Values here are messages to land; a null is a tombstone to land as an empty row."""
        if self.format == "json":
            return decode_json(values, self.max_depth, self.text_only, self.whole_parse)
        if self.format == "raw":
            return decode_raw(values)
        return self.wire.decode(values.to_pylist())


# ---------------------------------------------------------------- JSON


def decode_json(
    values: pa.Array | list[bytes | None],
    max_depth: int = 64,
    text_only: bool = False,
    whole_parse: threading.Lock | None = None,
) -> Decoded:
    """`text_only`: the rows will be written as their JSON text (NDJSON output), so the
    lines are checked, not parsed, and the table has no columns (see json_checks.checked_text).
    `whole_parse`: held while the whole batch is parsed (not for NDJSON's check)."""
    values = as_binary_array(values)
    if text_only and pa.types.is_binary(values.type):
        return checked_text(list(range(len(values))), values, {}, max_depth)
    rejects: dict[int, str] = {}
    plain = plain_lines(values)
    if plain is not None:
        # The usual batch: every value is one line "{...}" of printable text. It goes to the
        # parser as one Arrow array, with no Python work per message.
        kept, lines = list(range(len(values))), plain
    else:
        value_list = values.to_pylist()
        odd = {
            i
            for i, v in enumerate(value_list)
            if v is None or v[:1] != b"{" or v[-1:] != b"}" or b"\n" in v or b"\r" in v
        }
        kept, line_list = [], []
        for index, value in enumerate(value_list):
            if index in odd:
                value = normalise(index, value, rejects, max_depth)
                if value is None:
                    continue
            kept.append(index)
            line_list.append(value)
        lines = pa.array(line_list, pa.binary())
    if text_only:
        return checked_text(kept, lines, rejects, max_depth)
    with whole_parse or contextlib.nullcontext():
        table = _parse_checked(lines, max_depth)
    if table is not None:
        return Decoded(table, kept, rejects, lines=lines)
    return _decode_one_by_one(kept, lines.to_pylist(), rejects, max_depth)


JOINED_PARSE_BYTES = 8 << 20  # text up to this size is joined for the parser; a whole batch is read piece by piece
PARSE_SLICE_BYTES = 2 << 20  # Parquet from JSON parses this much at a time (see decode_in_slices)


def _checked_slices(lines: pa.Array, step: int, max_depth: int) -> Iterator[pa.Table]:
    """Tables of `step` lines at a time. The first slice's types are inferred (with date-like
    strings kept as text, as for a whole batch); every later slice is parsed with exactly
    that schema, and pyarrow.json refuses a value that does not fit it (a field the first
    slice did not have, nested or not; a number in a field typed as text; a fraction in an
    int64 field; a value in a field that was null throughout), so slices that all parse
    give the table inference of the whole batch gives: no type a later row would have
    changed, the fields in order of first appearance."""
    schema = None
    for start in range(0, len(lines), step):
        table = _parse_checked(lines.slice(start, step), max_depth, schema=schema, threads=False, utf8_checked=True)
        if table is None:
            raise NotSliceable(f"rows {start}-{start + step - 1} do not fit the first rows' schema")
        schema = table.schema
        yield table


def _read(
    lines: pa.Array, block: int, schema: pa.Schema | None = None, strict: bool = False, threads: bool = True
) -> pa.Table | None:
    """pyarrow.json's table of the lines (read through `LinesReader`: never joined whole).
    With a `schema`, fields it does not have are inferred, or with `strict` refused.
    `threads`: parse blocks on Arrow's thread pool (a whole batch), or on the calling thread
    (a slice: see _parse_checked)."""
    if len(values_buffer(lines)) <= JOINED_PARSE_BYTES:
        # A slice: joined by a kernel into one buffer, which the parser reads in place.
        # Through LinesReader and a Python file the same bytes are copied twice more, in
        # Python read calls: 6-7 % more CPU for a batch's parse.
        source = pa.BufferReader(lines_text(lines))
    else:
        source = io.BufferedReader(LinesReader(lines), buffer_size=block)
    try:
        return pa_json.read_json(
            source,
            read_options=pa_json.ReadOptions(block_size=block, use_threads=threads),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="error" if strict else "infer"
            )
            if schema is not None
            else None,
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _parse_lines(lines: pa.Array, schema: pa.Schema | None = None, threads: bool = True) -> pa.Table | None:
    """pyarrow.json's table of `lines` (a binary array), parsed as one newline-separated text.

    Strings that look like dates become timestamps in pyarrow.json; they are kept as text
    (their exact form, and the same type as in a batch where one value does not parse),
    which takes an explicit schema. That schema comes from the first rows: the
    batch is parsed once with it, and again only when a later row brings a new date-like
    field or a type the first rows did not show. The sample is a prefix of the batch, so a
    parse that succeeds with its schema gives the same table as inferring the whole batch:
    the same fields in the same order, the same types (pyarrow.json refuses, rather than
    converts, a value that does not fit an explicit type). The C parse (json_table.py) is
    stricter still (no field the schema lacks), so the batch is first parsed in C with the first
    rows' types, and by pyarrow.json only when some row does not fit them.

    With a `schema` (a later slice, see _checked_slices): parsed with exactly that schema, in C
    when it takes every line, else by pyarrow.json."""
    if schema is not None:
        table = table_of(lines, schema)  # None hands the slice to pyarrow.json
        if table is not None:
            return table
    block = max(_MIN_BLOCK, pc.max(pc.binary_length(lines)).as_py() + 2)
    if schema is not None:
        return _read(lines, block, schema, strict=True, threads=threads)
    explicit = None
    if len(lines) > 2 * _SAMPLE_ROWS:
        sample = _read(lines.slice(0, _SAMPLE_ROWS), block, threads=threads)
        if sample is not None:
            first_rows = _text_schema(sample.schema)
            table = table_of(lines, first_rows)
            if table is not None:
                return table
            if schema_has(pa.struct(list(sample.schema)), pa.types.is_timestamp):
                explicit = first_rows
    table = _read(lines, block, explicit, threads=threads)
    if table is None and explicit is not None:
        table = _read(lines, block, threads=threads)  # the first rows' types do not fit the batch: infer them all
    if table is not None and schema_has(pa.struct(list(table.schema)), pa.types.is_timestamp):
        text = _text_schema(table.schema)
        in_c = table_of(lines, text)
        table = in_c if in_c is not None else _read(lines, block, text, threads=threads)
    return table


def _text_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(timestamps_as_text(f.type)) for f in schema])


def _parse_checked(
    lines: pa.Array, max_depth: int, schema: pa.Schema | None = None, threads: bool = True, utf8_checked: bool = False
) -> pa.Table | None:
    """pyarrow.json's table of `lines` (with `schema`: exactly that schema), or None when it
    is not one row per line or when it could have lost something (then the lines are parsed
    one by one).

    `threads=False` for a slice of a batch (Parquet in slices): a slice is a block or two,
    and the two publisher threads already keep both cores busy; handing
    each slice to Arrow's thread pool cost CPU, and left its memory in those threads'
    allocator caches, out of reach of allocator.return_freed_arrow_memory (measured without the pool:
    5-15 % faster, 30-50 MiB less peak RSS)."""
    if not len(lines):
        return pa.table({})
    try:
        if not utf8_checked:  # the lines of a batch in slices: plain_lines checked them
            lines.cast(pa.string())  # pyarrow.json does not check UTF-8 inside strings
    except pa.ArrowInvalid:
        return None
    table = _parse_lines(lines, schema, threads)
    if table is None or table.num_rows != len(lines):
        return None
    if type_depth(pa.struct(list(table.schema)), max_depth) > max_depth or may_have_lost(table, lines):
        return None
    return table


def _decode_one_by_one(kept, lines, rejects, max_depth) -> Decoded:
    good_indices, good_lines, rows = parse_each(kept, lines, rejects, max_depth)
    good_array = pa.array(good_lines, pa.binary())
    table = _parse_checked(good_array, max_depth)
    widened = 0
    if table is None:
        # Valid rows whose types disagree (int here, string there), or numbers pyarrow
        # cannot hold exactly: type them ourselves, keeping every value.
        table, widened = rows_to_table(rows)
    return Decoded(table, good_indices, rejects, widened, lines=good_array)
