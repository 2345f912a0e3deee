"""Tables Spark can read.

`spark_readable(table)` makes a table safe for Parquet and for Spark's `mergeSchema`:
- null-typed columns (a field that was null in every row) are dropped, and so are empty
  objects (`struct<>`, which Parquet cannot store): Spark reads an absent column as null,
  and a later file with a real type merges with this one;
- arrays/maps whose elements were all null or `{}` get string elements (`[]` stays `[]`);
- names Spark or Delta refuse (` ,;{}()\\n\\t=`, control characters, empty) are rewritten with
  `_`, and names equal but for case (Spark is case-insensitive) get `__2`, `__3`, ...;
- Parquet/Spark types Spark cannot read (TIME, unsigned ints, decimals beyond 38 digits,
  half floats) become ones it can.
The rewritten names are returned so the encoder can record them in the file's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

_BAD_NAME_CHARS = re.compile(r"[ ,;{}()\n\t=\x00-\x1f\x7f]")


def _clean_name(name: str) -> str:
    cleaned = _BAD_NAME_CHARS.sub("_", name)
    return cleaned or "_blank"


def spark_names(names: list[str], keep: Iterable[str] = ()) -> list[str]:
    """Names Spark and Delta accept, unique without regard to case, in the same order.

    Within a group of names equal but for case, names in `keep` win, then the smallest by
    code point keeps its name; the others get `__2`, `__3`, ... (the same names in every file
    where the same fields collide)."""
    cleaned = [_clean_name(n) for n in names]
    keep = set(keep)
    groups: dict[str, list[int]] = {}
    for position, name in enumerate(cleaned):
        groups.setdefault(name.lower(), []).append(position)
    taken = set(groups)
    result = list(cleaned)
    for positions in groups.values():
        if len(positions) == 1:
            continue
        ordered = sorted(positions, key=lambda p: (names[p] not in keep, names[p]))
        for rank, position in enumerate(ordered[1:], start=2):
            candidate = f"{cleaned[position]}__{rank}"
            while candidate.lower() in taken:
                rank += 100
                candidate = f"{cleaned[position]}__{rank}"
            taken.add(candidate.lower())
            result[position] = candidate
    return result


class _Fixer:
    def __init__(self):
        self.renamed: dict[str, str] = {}

    def table(self, table: pa.Table, keep: Iterable[str] = ()) -> pa.Table:
        arrays, names = [], []
        for name, column in zip(table.column_names, table.columns, strict=False):
            # Chunk by chunk: pyarrow.json gives one chunk per MiB parsed, and combining them
            # first would copy the whole table. The fixes depend only on the type, so every
            # chunk comes out with the same type (or every chunk is left out).
            chunks = [self.array(chunk, name) for chunk in column.chunks or [pa.array([], column.type)]]
            if chunks[0] is not None:
                arrays.append(pa.chunked_array(chunks, type=chunks[0].type))
                names.append(name)
        new_names = spark_names(names, keep)
        for old, new in zip(names, new_names, strict=False):
            if old != new:
                self.renamed[new] = old
        if not arrays:
            return pa.table({"_": pa.nulls(table.num_rows)}).drop_columns(["_"])
        return pa.Table.from_arrays(arrays, names=new_names)

    def array(self, array: pa.Array, path: str) -> pa.Array | None:
        """The array made readable, or None when the column should be left out."""
        t = array.type
        if pa.types.is_null(t):
            return None
        if pa.types.is_struct(t):
            return self._struct(array, path)
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            values = self._element(array.values, path + "[]")
            if values is array.values:
                return array
            cls = pa.ListArray if pa.types.is_list(t) else pa.LargeListArray
            return cls.from_arrays(array.offsets, values, mask=array.is_null() if array.null_count else None)
        if pa.types.is_map(t):
            items = self._element(array.items, path + "{}")
            if items is array.items:
                return array
            return pa.MapArray.from_arrays(
                array.offsets, array.keys, items, mask=array.is_null() if array.null_count else None
            )
        if pa.types.is_fixed_size_list(t):
            return self.array(array.cast(pa.list_(t.value_type)), path)
        if pa.types.is_time32(t):
            return array.cast(pa.int32()).cast(pa.int64())
        if pa.types.is_time64(t):
            return array.cast(pa.int64())
        if pa.types.is_unsigned_integer(t):
            if t.bit_width <= 16:
                return array.cast(pa.int32())
            if t.bit_width == 32:
                return array.cast(pa.int64())
            return array.cast(pa.decimal128(20, 0))
        if pa.types.is_float16(t):
            return array.cast(pa.float32())
        if pa.types.is_decimal(t) and (t.precision > 38 or pa.types.is_decimal256(t)):
            return array.cast(pa.string())
        if pa.types.is_dictionary(t):
            return self.array(array.dictionary_decode(), path)
        return array

    def _struct(self, array: pa.StructArray, path: str) -> pa.Array | None:
        children, names = [], []
        changed = False
        for i in range(array.type.num_fields):
            name = array.type.field(i).name
            child = array.field(i)
            fixed = self.array(child, f"{path}.{name}")
            changed |= fixed is not child
            if fixed is not None:
                children.append(fixed)
                names.append(name)
        if not children:
            return None
        new_names = spark_names(names)
        for old, new in zip(names, new_names, strict=False):
            if old != new:
                self.renamed[f"{path}.{new}"] = f"{path}.{old}"
        if not changed and new_names == names:
            return array
        return pa.StructArray.from_arrays(children, names=new_names, mask=array.is_null() if array.null_count else None)

    def _element(self, values: pa.Array, path: str) -> pa.Array:
        """Elements of a list or map: never dropped (that would change the list), but an
        element type Parquet or Spark cannot hold becomes text."""
        fixed = self.array(values, path)
        if fixed is not None:
            return fixed
        if pa.types.is_null(values.type):
            return pa.nulls(len(values), pa.string())
        # An object with no (landable) fields: keep it as the JSON text "{}".
        return pc.if_else(values.is_valid(), pa.scalar("{}"), pa.scalar(None, pa.string()))


def spark_readable(table: pa.Table, keep: Iterable[str] = ()) -> tuple[pa.Table, dict[str, str]]:
    """`table` with the fixes Spark needs (see the module docstring), and {new name: old name}
    for every column or nested field that was renamed (nested as dotted paths)."""
    fixer = _Fixer()
    fixed = fixer.table(table, keep)
    return fixed, fixer.renamed
