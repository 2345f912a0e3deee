"""The encode step: one Batch in, the files to publish and the rejected messages out.

Pure and deterministic: the same batch always gives the same file names and bytes
(no wall-clock in content), which is what lets a replay after a crash reproduce
files that may already be published.

`encode()` raises `DecodeUnavailable` (source/decoded.py) when a decoding dependency (the
schema registry) cannot answer: nothing was rejected, and the same batch should be
encoded again after a backoff, as after a storage outage.
"""

from __future__ import annotations

import base64
import hashlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ingest_core.arrow.binary import repeated
from ingest_core.batching.buffer import Batch
from ingest_core.settings import Settings
from ingest_core.sink.formats import FORMATS, FileData, Rows
from ingest_core.sink.paths import PartitionTemplate, data_file_name
from ingest_core.source.decode import Decoder
from ingest_core.source.decoded import NotSliceable


@dataclass(frozen=True)
class OutputFile:
    path: str  # relative to output.url
    data: FileData  # bytes, an Arrow buffer, or Pieces (uncompressed NDJSON, made while it is written)
    rows: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True)
class Reject:
    index: int  # position in the batch
    reason: str


@dataclass
class EncodedBatch:
    batch: Batch
    files: list[OutputFile]
    rejects: list[Reject] = field(default_factory=list)
    widened: int = 0  # values written as text (a type conflict in the batch) rather than dropped
    skipped: int = 0  # tombstones skipped under decode.tombstones: skip (neither landed nor dead-lettered)
    schema_fingerprint: str | None = None  # of the rows' columns and types; None when written as JSON text


class BatchEncoder:
    def __init__(self, settings: Settings):
        self.topic = settings.topic
        self.template = PartitionTemplate.parse(settings.output.partition_by)
        # NDJSON writes JSON input as its text; the decoded table then only validates it,
        # unless partition_by reads record fields from it.
        self.format = FORMATS[settings.output.format]
        text_only = self.format.writes_json_text and not self.template.fields
        self.decoder = Decoder.from_settings(settings.decode, text_only=text_only)
        self.with_metadata = bool(settings.output.metadata_columns)
        self.with_headers = settings.output.with_headers  # a _headers column
        # Whether the pipeline's buffers read each message's headers: for the lake's _headers, or for a
        # dead-letter topic, which re-produces the original message, headers included. Otherwise they are
        # not read at all (about 90 ns a message) and dead-letter files record none.
        self.reads_headers = self.with_headers or bool(settings.dead_letter.topic)
        # An Encoder, with encode_slices when the format encodes in slices.
        self.encoder: Any = self.format.encoder(settings.output.codec)
        # JSON is parsed and written a slice at a time (Parquet) when the format can and the folders
        # do not depend on the records, so no table of a whole batch is held.
        self.parquet_in_slices = self.format.encodes_in_slices and not self.template.fields

    def encode(self, batch: Batch) -> EncodedBatch:
        return self._encode(batch)

    def _encode(self, batch: Batch) -> EncodedBatch:
        if self.parquet_in_slices:
            encoded = self._parquet_in_slices(batch)
            if encoded is not None:
                return encoded
        decoded = self.decoder.decode(batch.values)
        if not self.format.writes_json_text:
            decoded.lines = None  # only a format that writes the text keeps it: let go of it now (memory)
        rejects = [Reject(i, reason) for i, reason in sorted(decoded.rejects.items())]
        if not decoded.kept:
            return EncodedBatch(batch, [], rejects, decoded.widened, decoded.skipped)
        # Every message kept (the usual batch): its columns as they are, no take() of each.
        kept = None if len(decoded.kept) == len(batch) else pa.array(decoded.kept, pa.int64())
        offsets = int64s(batch.offsets) if kept is None else int64s(batch.offsets).take(kept)
        stamps = int64s(batch.timestamps) if kept is None else int64s(batch.timestamps).take(kept)
        metadata = _metadata_table(batch, kept, self.with_headers) if self.with_metadata else None
        folders = self.template.folders(stamps, decoded.table)
        files = []
        for folder, positions in _group_positions(folders):
            if positions is None:  # one folder (the usual case): no copy of the rows
                rows = Rows(payload=decoded.table, metadata=metadata, json_lines=decoded.lines)
                group_offsets = offsets
            else:
                rows = Rows(
                    payload=decoded.table.take(positions),
                    metadata=metadata.take(positions) if metadata is not None else None,
                    json_lines=_subset(decoded.lines, positions),
                )
                group_offsets = offsets.take(positions)
            files.append(self._output_file(batch, folder, group_offsets, self.encoder.encode(rows)))
        files.sort(key=lambda f: f.path)
        fingerprint = None if decoded.lines is not None else schema_fingerprint(decoded.table.schema, metadata)
        return EncodedBatch(batch, files, rejects, decoded.widened, decoded.skipped, fingerprint)

    def _parquet_in_slices(self, batch: Batch) -> EncodedBatch | None:
        """The batch as one Parquet file parsed and written slice by slice; None when it
        is not one for that (see Decoder.decode_in_slices) or its rows go to more than one
        folder: then it is encoded whole. Both ways give the same rows, types and names;
        only the row groups differ (one per parquet.ROW_GROUP_BYTES)."""
        groups = _group_positions(self.template.folders(int64s(batch.timestamps)))
        if len(groups) != 1:
            return None  # checked first: the folders are cheap, the look at the values is not
        tables = self.decoder.decode_in_slices(batch.values)
        if tables is None:
            return None
        metadata = _metadata_table(batch, None, self.with_headers) if self.with_metadata else None
        schemas: list[pa.Schema] = []
        try:
            data = self.encoder.encode_slices(_rows_of(tables, metadata, schemas))
        except NotSliceable:
            return None
        return EncodedBatch(
            batch,
            [self._output_file(batch, groups[0][0], int64s(batch.offsets), data)],
            schema_fingerprint=schema_fingerprint(schemas[0], metadata) if schemas else None,
        )

    def _output_file(self, batch: Batch, folder: str, offsets: pa.Array, data: FileData) -> OutputFile:
        """The file of the rows at `offsets` in `folder`, named by its first offset."""
        first = offsets[0].as_py()
        name = data_file_name(self.topic, batch.partition, first, self.encoder.extension)
        return OutputFile(
            path=f"{folder}/{name}" if folder else name,
            data=data,
            rows=len(offsets),
            first_offset=first,
            last_offset=offsets[-1].as_py(),
        )


def _rows_of(tables: Iterator[pa.Table], metadata: pa.Table | None, schemas: list[pa.Schema]) -> Iterator[Rows]:
    """Each slice's table with the metadata of the same rows; the first slice's schema goes to `schemas`."""
    start = 0
    for table in tables:
        if not schemas:
            schemas.append(table.schema)
        yield Rows(
            payload=table, metadata=None if metadata is None else metadata.slice(start, table.num_rows), json_lines=None
        )
        start += table.num_rows


def schema_fingerprint(payload: pa.Schema, metadata: pa.Table | None) -> str:
    """'sha256:' and 16 hex digits of the columns written (metadata, then payload: names and types
    in order, nested fields included): the same for every batch of an unchanged schema."""
    fields = list(metadata.schema) if metadata is not None else []
    text = ";".join(f"{f.name}:{f.type}" for f in fields + list(payload))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def int64s(numbers) -> pa.Array:
    """A batch's offsets or timestamps as an int64 Arrow array (from a buffer's `array('q')`
    without a copy; the batch never changes them)."""
    if isinstance(numbers, array) and numbers.typecode == "q":
        return pa.Array.from_buffers(pa.int64(), len(numbers), [None, pa.py_buffer(numbers)])
    return pa.array(numbers, pa.int64())


# A message's Kafka headers in order, duplicates kept; [] for a message without any (never null).
HEADERS_TYPE = pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())]))


def _metadata_table(batch: Batch, kept: pa.Array | None = None, with_headers: bool = False) -> pa.Table:
    """The metadata columns of the rows at `kept` (all the batch's rows when None)."""

    def rows(array: pa.Array) -> pa.Array:
        return array if kept is None else array.take(kept)

    count = len(batch.offsets) if kept is None else len(kept)
    keys = rows(pa.array(batch.keys, pa.binary()))
    columns = {
        "_topic": repeated(batch.topic, count, pa.string()),
        "_partition": repeated(batch.partition, count, pa.int32()),
        "_offset": rows(int64s(batch.offsets)),
        "_timestamp": rows(int64s(batch.timestamps))
        .cast(pa.timestamp("ms", tz="UTC"))
        .cast(pa.timestamp("us", tz="UTC")),
        "_key": _keys_as_text(keys),
    }
    if with_headers:
        columns["_headers"] = rows(headers_array(batch.headers or [None] * len(batch.offsets)))
    return pa.table(columns)


def headers_array(headers: list) -> pa.Array:
    """Each message's headers ([(key, value), ...] or None) as one list<struct<key, value>> array:
    the pairs flattened into two columns and the list offsets, no Python object per row."""
    pairs = [pair for message in headers if message for pair in message]
    offsets = array("i", accumulate((len(message) if message else 0 for message in headers), initial=0))
    entries = pa.StructArray.from_arrays(
        [pa.array([key for key, _ in pairs], pa.string()), pa.array([value for _, value in pairs], pa.binary())],
        fields=list(HEADERS_TYPE.value_type),
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), entries, type=HEADERS_TYPE)


def _keys_as_text(keys: pa.Array) -> pa.Array:
    """Keys as UTF-8 text; a key that is not valid UTF-8 becomes 'base64:<its base64>'."""
    try:
        return keys.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    return pa.array([None if k is None else _text_or_base64(k) for k in keys.to_pylist()], pa.string())


def _text_or_base64(key: bytes) -> str:
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(key).decode("ascii")


def _group_positions(folders: pa.Array) -> list[tuple[str, pa.Array | None]]:
    """(folder, row positions) for each distinct folder, in order of first appearance;
    positions None when every row goes to the one folder."""
    encoded = folders.dictionary_encode()
    indices = encoded.indices
    if len(encoded.dictionary) == 1:
        return [(encoded.dictionary[0].as_py(), None)]
    groups = []
    for code, folder in enumerate(encoded.dictionary.to_pylist()):
        positions = pc.indices_nonzero(pc.equal(indices, code))
        groups.append((folder, positions))
    return groups


def _subset(lines: pa.Array | None, positions: pa.Array) -> pa.Array | None:
    return None if lines is None else lines.take(positions)
