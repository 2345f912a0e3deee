"""Parquet output's later JSON slices parsed in C (json_columns.c) straight into the first slice's
schema: the same table pyarrow.json gives with that schema explicit, in about a quarter of its time
(bench/json_columns.py). A slice the C parse does not take (see json_columns.c: a value that does
not fit the schema, an escape in a key, NaN, ...) gets None here, and pyarrow.json decides."""

from __future__ import annotations

import pyarrow as pa

from ingest_core.source import json_columns

_NULL, _BOOL, _INT64, _DOUBLE, _STRING, _LIST, _STRUCT = range(7)
_SCALARS = {pa.null(): _NULL, pa.bool_(): _BOOL, pa.int64(): _INT64, pa.float64(): _DOUBLE, pa.string(): _STRING}

Plan = tuple[int, "tuple[bytes, ...] | None", "tuple[Plan, ...]"]
_DEEPEST = 500  # json_columns.c's DEEPEST_PLAN


def plan_of(t: pa.DataType, depth: int = 0) -> Plan | None:
    """The plan json_columns.parse takes for a column of type `t`; None for a type it does not build
    (pyarrow.json infers only these: null, bool, int64, double, string, list and struct) or nested
    deeper than it goes."""
    if depth >= _DEEPEST:
        return None
    if t in _SCALARS:
        return (_SCALARS[t], None, ())
    if pa.types.is_list(t):
        item = plan_of(t.value_type, depth + 1)
        return None if item is None else (_LIST, None, (item,))
    if pa.types.is_struct(t):
        names = tuple(t.field(i).name.encode() for i in range(t.num_fields))
        fields = tuple(plan_of(t.field(i).type, depth + 1) for i in range(t.num_fields))
        if len(set(names)) != len(names) or any(f is None for f in fields):
            return None
        return (_STRUCT, names, fields)  # type: ignore[return-value]
    return None


def table_of(lines: pa.Array, schema: pa.Schema) -> pa.Table | None:
    """The table of `lines` (a binary array of JSON objects, one a line) in exactly `schema`, or None
    when the C parse does not take some line."""
    if not len(schema) or not pa.types.is_binary(lines.type) or lines.null_count:
        return None
    plan = plan_of(pa.struct(list(schema)))
    if plan is None:
        return None
    _, offsets, data = lines.buffers()
    result = json_columns.parse(plan, data if data is not None else b"", offsets, lines.offset, len(lines))
    if result is None:
        return None
    columns = [_array(field.type, column) for field, column in zip(schema, result[4], strict=True)]
    return pa.Table.from_arrays(columns, schema=schema)


def _array(t: pa.DataType, built: tuple) -> pa.Array:
    length, nulls, validity, buffers, children = built
    if pa.types.is_null(t):
        return pa.nulls(length)
    if pa.types.is_struct(t):
        kids = [_array(t.field(i).type, child) for i, child in enumerate(children)]
    elif pa.types.is_list(t):
        kids = [_array(t.value_type, children[0])]
    else:
        kids = None
    return pa.Array.from_buffers(
        t,
        length,
        [None if validity is None else pa.py_buffer(validity), *map(pa.py_buffer, buffers)],
        null_count=nulls,
        children=kids,
    )
