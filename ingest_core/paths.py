"""Where rows go: the `partition_by` folder of each row, and data file names.

`partition_by` is a template such as "dt={timestamp:%Y-%m-%d}/hour={timestamp:%H}":
`{timestamp:FMT}` formats the record timestamp in UTC (strftime), `{field.path}` a
value of the record. Values from records are escaped Hive-style so no `/`, `..` or
control character can leave the partition folder.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_SAFE = set(string.ascii_letters + string.digits + "-_.,:+@ ")


@dataclass(frozen=True)
class Placeholder:
    field: str | None  # a dotted record field, or None for the record timestamp
    fmt: str | None  # strftime format for the timestamp


@dataclass(frozen=True)
class PartitionTemplate:
    literals: tuple[str, ...]  # len(placeholders) + 1 literal pieces around the placeholders
    placeholders: tuple[Placeholder, ...]

    @classmethod
    def parse(cls, template: str) -> "PartitionTemplate":
        """Raises ValueError with a fix when the template is malformed."""
        if template.startswith("/") or ".." in template.split("/"):
            raise ValueError("partition_by must be a relative path inside output.url, without '..'")
        literals: list[str] = []
        placeholders: list[Placeholder] = []
        position = 0
        for match in re.finditer(r"\{([^{}]*)\}", template):
            literals.append(template[position:match.start()])
            name, _, fmt = match.group(1).partition(":")
            if name == "timestamp":
                placeholders.append(Placeholder(None, fmt or "%Y-%m-%d"))
            elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name) and not fmt:
                placeholders.append(Placeholder(name, None))
            else:
                raise ValueError(
                    f"partition_by placeholder {{{match.group(1)}}} is not understood; "
                    "use {timestamp:%Y-%m-%d} or {field.path}"
                )
            position = match.end()
        literals.append(template[position:])
        if any(c in "{}" for c in "".join(literals)):
            raise ValueError("partition_by has an unbalanced '{' or '}'")
        return cls(tuple(literals), tuple(placeholders))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.placeholders if p.field]

    def folders(self, timestamps_ms: list[int], rows: pa.Table | None = None) -> pa.Array:
        """One folder (relative path) per row, computed column-wise."""
        count = len(timestamps_ms)
        if not self.placeholders:
            return pa.array([self.literals[0].strip("/")] * count, pa.string())
        stamps = pa.array(timestamps_ms, pa.timestamp("ms", tz="UTC"))
        pieces: list[pa.Array | str] = []
        for literal, placeholder in zip(self.literals, self.placeholders):
            pieces.append(literal)
            if placeholder.field is None:
                pieces.append(pc.strftime(stamps, format=placeholder.fmt))
            else:
                pieces.append(_field_values(rows, placeholder.field, count))
        pieces.append(self.literals[-1])
        arrays = [p if isinstance(p, (pa.Array, pa.ChunkedArray)) else pa.array([p] * count, pa.string()) for p in pieces]
        return pc.binary_join_element_wise(*arrays, "")


def _field_values(rows: pa.Table | None, path: str, count: int) -> pa.Array:
    column = _lookup(rows, path.split(".")) if rows is not None else None
    if column is None:
        return pa.array([HIVE_DEFAULT_PARTITION] * count, pa.string())
    values = column.to_pylist()
    return pa.array([escape_partition_value(v) for v in values], pa.string())


def _lookup(rows: pa.Table, parts: list[str]):
    if parts[0] not in rows.column_names:
        return None
    column = rows.column(parts[0])
    for part in parts[1:]:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
            return None
        column = pc.struct_field(column, part)
    return column


def escape_partition_value(value: object) -> str:
    """Hive-style escaping: anything outside a safe set becomes %XX; empty -> default partition."""
    if value is None:
        return HIVE_DEFAULT_PARTITION
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if text in ("", ".", ".."):
        return HIVE_DEFAULT_PARTITION
    escaped = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text)
    escaped = escaped.replace("..", "%2E%2E")
    if escaped[0] in "._":  # a leading '.' or '_' would hide the folder from Spark
        escaped = f"%{ord(escaped[0]):02X}{escaped[1:]}"
    return escaped[:200]


def data_file_name(topic: str, partition: int, first_offset: int, extension: str) -> str:
    return f"{topic}+{partition}+{first_offset:020d}{extension}"
