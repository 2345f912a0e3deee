"""Checks around a whole batch of JSON values: which values the batch paths can take as they are,
the C check of NDJSON output (json_validator.c), and what a parsed table could have lost
(doubles that may hold rounded integer literals, a list of nulls pyarrow.json miscounted,
date-like strings it turned into timestamps, which are kept as text instead)."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from ingest_core.arrow.binary import values_buffer
from ingest_core.arrow.schema import schema_has
from ingest_core.source import json_columns, json_validator
from ingest_core.source.decoded import Decoded
from ingest_core.source.json_message import normalise, parse_json_object

# 16+ digits may be an integer a double cannot hold exactly; pyarrow.json silently makes
# integers beyond int64, and any integer in a column that also holds fractions, doubles.
_LONG_DIGITS = re.compile(rb"\d{16,}")
_MINUS_NAN = re.compile(rb"-NaN")


def may_have_lost(table: pa.Table, lines: pa.Array) -> bool:
    """True when the table parsed from `lines` (pyarrow.json's or json_columns.c's) may not hold
    every value exactly as the text has it: then the lines are parsed one by one."""
    schema_type = pa.struct(list(table.schema))
    if schema_has(schema_type, _is_list_of_nulls):
        try:
            table.validate(full=True)
        except pa.ArrowInvalid:
            return True  # pyarrow.json miscounts the items of a list that holds only nulls (26.0)
    if schema_has(schema_type, pa.types.is_floating):
        # The text is searched only when the doubles say it may hold what we look for: a scan
        # of the whole batch costs more than the parse (re holds the GIL; Arrow's substring
        # kernel is slower still, measured at a third of the encode).
        doubles = double_arrays(table)
        if any(pc.any(pc.is_nan(d)).as_py() for d in doubles) and _MINUS_NAN.search(_text_of(lines)):
            return True  # pyarrow takes "-NaN"; Python's parser (the per-message path) refuses it
        if any(has_large(d) for d in doubles) and _LONG_DIGITS.search(_text_of(lines)):
            return True  # an integer literal that may have been rounded into a double
    return False


def _is_list_of_nulls(t: pa.DataType) -> bool:
    return pa.types.is_list(t) and pa.types.is_null(t.value_type)


def _text_of(lines: pa.Array) -> memoryview:
    """The lines' bytes back to back (no separators: a line ends with "}" and the next starts
    with "{", so no token spans two lines)."""
    return memoryview(values_buffer(lines))


def double_arrays(table: pa.Table) -> list[pa.Array]:
    """Every floating-point array in the table, nested ones included."""
    found = []
    stack = [chunk for column in table.columns for chunk in column.chunks]
    while stack:
        array = stack.pop()
        t = array.type
        if pa.types.is_floating(t):
            found.append(array)
        elif pa.types.is_struct(t):
            stack.extend(array.field(i) for i in range(t.num_fields))
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            stack.append(array.flatten())
    return found


def has_large(doubles: pa.Array) -> bool:
    """True when some finite double is >= 2^53 in magnitude: only then can a double column
    hold an integer literal pyarrow.json rounded (smaller integers are exact)."""
    large = pc.and_(pc.is_finite(doubles), pc.greater_equal(pc.abs(doubles), float(1 << 53)))
    return bool(pc.any(large).as_py())


def timestamps_as_text(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(timestamps_as_text(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(timestamps_as_text(t.value_type)))
    return t


def plain_lines(values: pa.Array) -> pa.Array | None:
    """`values` when each is a single line that starts with "{", ends with "}" and is valid
    UTF-8; None when some value needs a look of its own. The kernels and the search for line
    breaks (memchr) run without the GIL, so the consume loop keeps going meanwhile."""
    if not len(values) or values.null_count:
        return None
    if not pa.types.is_binary(values.type):
        try:
            values = values.cast(pa.binary())
        except (pa.ArrowInvalid, pa.ArrowCapacityError):  # over 2 GiB in one batch
            return None
    if not pc.all(pc.starts_with(values, "{")).as_py() or not pc.all(pc.ends_with(values, "}")).as_py():
        return None
    try:
        values.cast(pa.string())  # checks UTF-8 (fast when it is ASCII)
    except pa.ArrowInvalid:
        return None
    if json_columns.has_line_break(values_buffer(values)):
        return None
    return values


def slice_rows(lines: pa.Array, slice_bytes: int) -> int:
    """How many of `lines` make about `slice_bytes` of text (at least one)."""
    per_row = max(1, len(values_buffer(lines)) // max(1, len(lines)))
    return max(1, slice_bytes // per_row)


def suspect_rows(lines: pa.Array, max_depth: int) -> list[int]:
    """The rows of `lines` (a binary array) that may not be one NDJSON line holding one JSON object
    within the rules (json_validator.c), nulls among them: every other row is one. Read in place
    from the array's buffers, in one pass with the GIL released."""
    if not len(lines):
        return []
    if not pa.types.is_binary(lines.type):
        raise ValueError(f"suspect_rows takes a binary array, not {lines.type}")
    _, offsets, data = lines.buffers()
    found = json_validator.suspect_rows(data if data is not None else b"", offsets, lines.offset, len(lines), max_depth)
    if lines.null_count:  # a null's bytes, if it has any, are not a value
        found = sorted(set(found) | set(pc.indices_nonzero(lines.is_null()).to_pylist()))
    return found


def checked_text(kept: list[int], lines: pa.Array, rejects: dict[int, str], max_depth: int) -> Decoded:
    """For NDJSON: the values that are each one line and one JSON object within the rules, checked
    in one pass without the GIL (json_validator.c); nothing is parsed. A value it flags is made one
    line (normalise: blanks and line breaks, a BOM; a tombstone landed as a row becomes "{}"), the
    lines made are checked again in one pass, and those still flagged are parsed one by one
    (parse_json_object), which keeps them or gives the reason they are dead-lettered. The table has
    no columns: the lines are written as they are."""
    bad: set[int] = set()
    made: dict[int, bytes] = {}
    for row in suspect_rows(lines, max_depth):
        line = normalise(kept[row], lines[row].as_py(), rejects, max_depth)
        if line is None:
            bad.add(row)
        else:
            made[row] = line
    if made:
        rows = sorted(made)
        for again in suspect_rows(pa.array([made[row] for row in rows], pa.binary()), max_depth):
            parsed = parse_json_object(made[rows[again]], max_depth)
            if isinstance(parsed, str):
                rejects[kept[rows[again]]] = parsed
                bad.add(rows[again])
        changed = pa.array([row in made for row in range(len(lines))])
        lines = pc.replace_with_mask(lines, changed, pa.array([made[row] for row in rows], pa.binary()))
    if bad:
        lines = lines.filter(pa.array([row not in bad for row in range(len(lines))]))
        kept = [index for row, index in enumerate(kept) if row not in bad]
    return Decoded(pa.table({"rows": pa.nulls(len(lines))}).select([]), kept, rejects, lines=lines)
