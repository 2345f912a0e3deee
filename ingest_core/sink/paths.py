"""Where rows go: the `partition_by` folder of each row, and data file names.

`partition_by` is a template such as "dt={timestamp:%Y-%m-%d}/hour={timestamp:%H}":
`{timestamp:FMT}` formats the record timestamp in UTC (strftime), `{field.path}` a
value of the record. Values from records are escaped Hive-style (`%XX`, which Spark
decodes back when it reads the partition column), so no `/`, `\\`, `..`, control or
invisible character can leave the partition folder or hide it: Spark skips folders
whose name starts with `.` (or `_` without `=`), so a leading `.` or `_` is escaped too.
A missing or null field, or an empty value, goes to `__HIVE_DEFAULT_PARTITION__` (read
back as null). Values longer than 200 bytes once escaped are cut and suffixed with
a hash of the whole value, so distinct values stay in distinct folders.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc

from ingest_core.arrow.binary import repeated

HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# What Hive and Spark escape in partition values (ExternalCatalogUtils.escapePathName), plus
# characters that are unsafe in file names on some systems or in shells.
_ESCAPED_ASCII = set("\"#%'*/:=?\\{}[]^<>|`") | {chr(c) for c in range(0x20)} | {"\x7f"}
_KEPT_ASCII = {chr(c) for c in range(0x20, 0x7F)} - _ESCAPED_ASCII
_MAX_VALUE = 200
_ALL_SAFE = re.compile(r"^[A-Za-z0-9\-,+@ !$&();~][A-Za-z0-9\-_.,+@ !$&();~]*$")


@dataclass(frozen=True)
class Placeholder:
    field: str | None  # a dotted record field, or None for the record timestamp
    fmt: str | None  # strftime format for the timestamp


@dataclass(frozen=True)
class PartitionTemplate:
    literals: tuple[str, ...]  # len(placeholders) + 1 literal pieces around the placeholders
    placeholders: tuple[Placeholder, ...]

    @classmethod
    def parse(cls, template: str) -> PartitionTemplate:
        """Raises ValueError with a fix when the template is malformed."""
        if template.startswith("/") or ".." in template.split("/"):
            raise ValueError("partition_by must be a relative path inside output.url, without '..'")
        for segment in template.split("/"):
            if segment.startswith(".") or (segment.startswith("_") and "=" not in segment):
                raise ValueError(
                    f"partition_by folder {segment!r} starts with '{segment[0]}', so Spark and Auto Loader "
                    "would skip it. Fix: name it like country={country}"
                )
        literals: list[str] = []
        placeholders: list[Placeholder] = []
        position = 0
        for match in re.finditer(r"\{([^{}]*)\}", template):
            literals.append(template[position : match.start()])
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
            return repeated(self.literals[0].strip("/"), count, pa.string())
        millis = timestamps_ms if isinstance(timestamps_ms, pa.Array) else pa.array(timestamps_ms, pa.int64())
        pieces: list[pa.Array | str] = []
        for literal, placeholder in zip(self.literals, self.placeholders, strict=False):
            pieces.append(literal)
            if placeholder.field is None:
                assert placeholder.fmt is not None  # a time placeholder always has its format
                pieces.append(_format_timestamps(millis, placeholder.fmt))
            else:
                pieces.append(_field_values(rows, placeholder.field, count))
        pieces.append(self.literals[-1])
        if all(isinstance(p, str) for p in pieces):  # every row in one folder (the usual batch): no per-row text
            return repeated("".join(cast("list[str]", pieces)), count, pa.string())
        # Literals (and a time every row shows the same) go in as scalars: the kernel repeats them on every row.
        arrays = [p if isinstance(p, (pa.Array, pa.ChunkedArray)) else pa.scalar(p, pa.string()) for p in pieces]
        return pc.binary_join_element_wise(*arrays, "")


# An Arrow scalar, not a Python int: in `ingest run`, pyarrow converting the Python number of this
# compute call tried to import pandas and imported dateutil (16 ms with the GIL held, in the first batch).
_MINUTE_MS = pa.scalar(60_000, pa.int64())
_SUB_MINUTE = ("%S", "%T", "%c", "%X", "%f", "%L", "%s", "%r", "%+", "%E", "%O")


def _format_timestamps(millis: pa.Array, fmt: str) -> pa.Array | str:
    """strftime of each timestamp, computed once per distinct minute (a batch spans few)
    when the format shows nothing finer than minutes (Arrow's %S carries fractions); the
    one text itself when every timestamp gives the same."""
    stamps_type = pa.timestamp("ms", tz="UTC")
    if any(code in fmt for code in _SUB_MINUTE) or pc.min(millis).as_py() < 0:
        return pc.strftime(millis.cast(stamps_type), format=fmt)
    minutes = pc.divide(millis, _MINUTE_MS)  # integer division: whole minutes, for non-negative times
    distinct = pc.unique(minutes)
    formatted = pc.strftime(pc.multiply(distinct, _MINUTE_MS).cast(stamps_type), format=fmt)
    texts = pc.unique(formatted)
    if len(texts) == 1:
        return str(texts[0].as_py())
    return formatted.take(pc.index_in(minutes, value_set=distinct))


def _field_values(rows: pa.Table | None, path: str, count: int) -> pa.Array:
    column = _lookup(rows, path.split(".")) if rows is not None else None
    if column is None:
        return repeated(HIVE_DEFAULT_PARTITION, count, pa.string())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_integer(column.type) or pa.types.is_string(column.type):
        # The common case (ids, country codes) without Python per row: values that need
        # no escaping are used as they are.
        text = column.cast(pa.string())
        plain = pc.and_(
            pc.match_substring_regex(text, _ALL_SAFE.pattern), pc.less_equal(pc.utf8_length(text), _MAX_VALUE)
        )
        if pc.all(pc.fill_null(plain, False)).as_py():
            return text
    return pa.array([escape_partition_value(v) for v in column.to_pylist()], pa.string())


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
    """Hive-style escaping of one value: characters outside a safe set become %XX (their
    UTF-8 bytes); empty or null -> the default partition; never a hidden or traversing name."""
    if value is None:
        return HIVE_DEFAULT_PARTITION
    text = _as_text(value)
    if text == "":
        return HIVE_DEFAULT_PARTITION
    escaped = "".join(c if _kept(c) else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")) for c in text)
    if escaped[0] in "._":  # a leading '.' or '_' would hide the folder from Spark
        escaped = f"%{ord(escaped[0]):02X}{escaped[1:]}"
    # No ".." replacement needed: '/' and '\\' are always escaped and a leading '.' too, so a
    # value can never be a whole ".." path segment ("a..b" is an ordinary name).
    if len(escaped.encode("utf-8")) > _MAX_VALUE:  # file systems allow 255 bytes per name
        cut = escaped[: _MAX_VALUE - 18]
        while len(cut.encode("utf-8")) > _MAX_VALUE - 18:
            cut = cut[:-1]
        if "%" in cut[-2:]:  # do not cut an escape in two
            cut = cut[: cut.rindex("%")]
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        escaped = f"{cut}~{digest}"
    return escaped


def _kept(c: str) -> bool:
    if c < "\x80":
        return c in _KEPT_ASCII
    # Letters, digits, symbols and punctuation of any script are kept (as Hive does); controls,
    # invisible format characters, separators and unassigned code points are escaped.
    return unicodedata.category(c)[0] in "LMNPS"


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def data_file_name(topic: str, partition: int, first_offset: int, extension: str) -> str:
    return f"{topic}+{partition}+{first_offset:020d}{extension}"
