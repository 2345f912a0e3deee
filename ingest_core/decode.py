"""Decoding a batch of raw values into an Arrow table of rows, or dead-letter reasons.

The hot path parses the whole batch in one call (pyarrow.json on a joined buffer);
only when that fails are messages parsed one by one, to isolate the bad ones.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.json as pa_json

_MIN_BLOCK = 1 << 20


@dataclass
class Decoded:
    """The rows that decoded (`table`, one row per index in `kept`) and the rejects."""

    table: pa.Table
    kept: list[int]
    rejects: dict[int, str] = field(default_factory=dict)  # index in batch -> reason
    widened: int = 0  # values whose column type was widened to keep them
    lines: list[bytes] | None = None  # JSON input: the validated text of each kept row


def decode_batch(fmt: str, values: list[bytes | None]) -> Decoded:
    if fmt == "json":
        return decode_json(values)
    if fmt == "raw":
        return decode_raw(values)
    raise ValueError(f"decode.format {fmt!r} is not implemented yet")


def decode_raw(values: list[bytes | None]) -> Decoded:
    kept = [i for i, v in enumerate(values) if v is not None]
    rejects = {i: "tombstone: the message has no value" for i, v in enumerate(values) if v is None}
    table = pa.table({"value": pa.array([values[i] for i in kept], pa.binary())})
    return Decoded(table, kept, rejects)


def decode_json(values: list[bytes | None]) -> Decoded:
    rejects: dict[int, str] = {}
    kept: list[int] = []
    lines: list[bytes] = []
    for index, value in enumerate(values):
        if value is None:
            rejects[index] = "tombstone: the message has no value"
            continue
        if b"\n" in value or b"\r" in value:
            # Outside strings a newline is whitespace and inside strings JSON forbids it raw,
            # so replacing it keeps valid JSON valid and one value per line.
            value = value.replace(b"\r", b" ").replace(b"\n", b" ")
        if not value.strip():
            rejects[index] = "empty value: expected a JSON object"
            continue
        kept.append(index)
        lines.append(value)
    table = _parse_lines(lines)
    if table is not None and table.num_rows == len(lines):
        return Decoded(table, kept, rejects, lines=lines)
    return _decode_one_by_one(values, kept, lines, rejects)


def _parse_lines(lines: list[bytes]) -> pa.Table | None:
    if not lines:
        return pa.table({})
    block = max(_MIN_BLOCK, max(map(len, lines)) + 2)
    try:
        return pa_json.read_json(
            io.BytesIO(b"\n".join(lines)),
            read_options=pa_json.ReadOptions(block_size=block),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _decode_one_by_one(values, kept, lines, rejects) -> Decoded:
    good_indices: list[int] = []
    good_lines: list[bytes] = []
    for index, line in zip(kept, lines):
        reason = _reject_reason(line)
        if reason:
            rejects[index] = reason
        else:
            good_indices.append(index)
            good_lines.append(line)
    table = _parse_lines(good_lines)
    widened = 0
    if table is None or table.num_rows != len(good_lines):
        # Valid rows whose types disagree (int here, string there): keep every value.
        rows = [json.loads(line) for line in good_lines]
        table, widened = rows_to_table(rows)
    return Decoded(table, good_indices, rejects, widened, lines=good_lines)


def _reject_reason(line: bytes) -> str | None:
    try:
        value = json.loads(line)
    except UnicodeDecodeError as error:
        return f"invalid UTF-8: {error}"
    except (ValueError, RecursionError) as error:
        return f"invalid JSON: {str(error)[:300]}"
    if not isinstance(value, dict):
        return f"expected a JSON object, got a JSON {type(value).__name__}"
    if _parse_lines([line]) is None:
        try:
            pa_json.read_json(io.BytesIO(line), read_options=pa_json.ReadOptions(block_size=len(line) + _MIN_BLOCK))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            return f"unsupported JSON: {str(error)[:300]}"
    return None


def rows_to_table(rows: list[dict]) -> tuple[pa.Table, int]:
    """A table from Python rows; a column whose values disagree in type becomes JSON text."""
    try:
        return pa.Table.from_pylist(rows), 0
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    columns: dict[str, list] = {}
    for position, row in enumerate(rows):
        for name, value in row.items():
            columns.setdefault(name, [None] * len(rows))[position] = value
    arrays = {}
    widened = 0
    for name, column in columns.items():
        try:
            arrays[name] = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            arrays[name] = pa.array([
                None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in column
            ], pa.string())
            widened += sum(1 for v in column if v is not None and not isinstance(v, str))
    return pa.table(arrays), widened
