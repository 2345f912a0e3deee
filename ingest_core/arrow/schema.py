"""Column types: parsed JSON rows to Arrow without losing a value (tables Spark can read: spark.py).

`rows_to_table(rows)` builds a table from parsed JSON rows when pyarrow.json cannot take a
batch whole (a field is an int in one row and a string in another). Types are unified
field by field, recursively, so a conflict deep in an object widens only that field:
- int + double → double, unless an int is not exact in a double (|v| > 2^53) → string;
- anything else that disagrees (bool + int, object + scalar, array + object, ...) → string,
  scalars as their JSON text and objects/arrays as compact JSON text;
- integers beyond int64 and numbers beyond double keep their exact JSON text (string).
Every value written as text although it was not a JSON string is counted as widened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_EXACT_IN_DOUBLE = 1 << 53


class NumberText(str):
    """A JSON number no Arrow number type holds exactly (beyond int64, or beyond double):
    kept as its literal text."""

    __slots__ = ()


# ---------------------------------------------------------------- JSON type inference


class _Type:
    """An inferred JSON type. Scalars are shared singletons; lists and structs are built."""

    __slots__ = ("kind", "big", "wide", "elem", "fields", "_needs")

    def __init__(self, kind: str, big: bool = False, wide: bool = False, elem=None, fields=None):
        self.kind = kind  # null | bool | int | float | text | list | struct
        self.big = big  # int: some value is not exact in a double
        self.wide = wide  # text: some values are not JSON strings (must be rewritten)
        self.elem = elem
        self.fields = fields
        self._needs: bool | None = None

    @property
    def needs_rewrite(self) -> bool:
        """True when some value below must be rewritten as text before Arrow takes it."""
        if self._needs is None:
            if self.kind == "text":
                self._needs = self.wide
            elif self.kind == "list":
                self._needs = self.elem.needs_rewrite
            elif self.kind == "struct":
                self._needs = any(t.needs_rewrite for t in self.fields.values())
            else:
                self._needs = False
        return self._needs


_NULL = _Type("null")
_BOOL = _Type("bool")
_INT = _Type("int")
_BIGINT = _Type("int", big=True)
_FLOAT = _Type("float")
_TEXT = _Type("text")
_WIDE = _Type("text", wide=True)


def _infer(value: Any) -> _Type:
    if value is None:
        return _NULL
    kind = type(value)
    if kind is str:
        return _TEXT
    if kind is bool:
        return _BOOL
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            return _WIDE
        return _BIGINT if abs(value) > _EXACT_IN_DOUBLE else _INT
    if kind is float:
        return _FLOAT
    if kind is dict:
        return _Type("struct", fields={k: _infer(v) for k, v in value.items()})
    if kind is list:
        elem = _NULL
        for item in value:
            elem = _unify(elem, _infer(item))
        return _Type("list", elem=elem)
    return _WIDE  # NumberText and anything else that is not plain JSON


def _unify(a: _Type, b: _Type) -> _Type:
    if a is b or b.kind == "null":
        return a
    if a.kind == "null":
        return b
    if a.kind == b.kind:
        kind = a.kind
        if kind == "int":
            return _BIGINT if (a.big or b.big) else _INT
        if kind == "text":
            return _WIDE if (a.wide or b.wide) else _TEXT
        if kind == "list":
            elem = _unify(a.elem, b.elem)
            return a if elem is a.elem else _Type("list", elem=elem)
        if kind == "struct":
            fields = dict(a.fields)
            for name, t in b.fields.items():
                fields[name] = _unify(fields[name], t) if name in fields else t
            return _Type("struct", fields=fields)
        return a  # bool, float
    if {a.kind, b.kind} == {"int", "float"}:
        return _WIDE if (a.big or b.big) else _FLOAT
    return _WIDE


def _arrow_type(t: _Type) -> pa.DataType:
    kind = t.kind
    if kind == "null":
        return pa.null()
    if kind == "bool":
        return pa.bool_()
    if kind == "int":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    if kind == "text":
        return pa.string()
    if kind == "list":
        return pa.list_(_arrow_type(t.elem))
    return pa.struct([pa.field(name, _arrow_type(ft)) for name, ft in t.fields.items()])


def json_text(value: Any) -> str:
    """Compact JSON text of a parsed value; NumberText stays an unquoted number."""
    if isinstance(value, NumberText):
        return str.__str__(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return (
            "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + json_text(v) for k, v in value.items()) + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _scalar_text(value: Any) -> str:
    if isinstance(value, NumberText):
        return str.__str__(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json_text(value)


class _Rewriter:
    def __init__(self):
        self.widened = 0

    def conform(self, value: Any, t: _Type) -> Any:
        if value is None or not t.needs_rewrite:
            return value
        kind = t.kind
        if kind == "text":
            if type(value) is str:
                return value
            self.widened += 1
            return _scalar_text(value)
        if kind == "list":
            return [self.conform(v, t.elem) for v in value]
        return {name: self.conform(value.get(name), ft) for name, ft in t.fields.items()}


def rows_to_table(rows: list[dict]) -> tuple[pa.Table, int]:
    """A table from parsed JSON objects; returns it and the number of values widened to text."""
    row_type = _Type("struct", fields={})
    for row in rows:
        row_type = _unify(row_type, _infer(row))
    rewriter = _Rewriter()
    if row_type.needs_rewrite:
        rows = [rewriter.conform(row, row_type) for row in rows]
    schema = pa.schema([pa.field(name, _arrow_type(t)) for name, t in row_type.fields.items()])
    if not schema:
        return pa.table({"_": pa.nulls(len(rows))}).drop_columns(["_"]), 0
    return pa.Table.from_pylist(rows, schema=schema), rewriter.widened


def exceeds_depth(value: Any, limit: int) -> bool:
    """True when objects/arrays nest deeper than `limit` (the top-level object is depth 1)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def type_depth(t: pa.DataType, limit: int = 1 << 30) -> int:
    """Nesting depth of an Arrow type, counted like `exceeds_depth` counts JSON (iterative:
    pyarrow.json happily builds types hundreds of levels deep); stops counting past `limit`."""
    deepest = 0
    stack = [(t, 0)]
    while stack:
        current, depth = stack.pop()
        if (
            pa.types.is_struct(current)
            or pa.types.is_list(current)
            or pa.types.is_large_list(current)
            or pa.types.is_fixed_size_list(current)
            or pa.types.is_map(current)
        ):
            depth += 1
            if depth > limit:
                return depth
            stack.extend((current.field(i).type, depth) for i in range(current.num_fields))
        deepest = max(deepest, depth)
    return deepest


def schema_has(t: pa.DataType, predicate) -> bool:
    stack = [t]
    while stack:
        current = stack.pop()
        if predicate(current):
            return True
        stack.extend(current.field(i).type for i in range(current.num_fields))
    return False
