"""Typed settings of one consumer, validated from the merged YAML.

Every field has the default a data engineer would expect; unknown keys are
rejected (the loader turns that into a did-you-mean). Values that are secrets
(`kafka` SASL settings, `output.storage_options`) are never rendered by `redacted()`.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ingest_core.batching.budget import MEMORY_SHARE
from ingest_core.settings_base import ByteSize, Seconds, _Section
from ingest_core.settings_deploy import DeploySettings
from ingest_core.sink.formats import FORMATS

# The output formats, one file each in sink/formats/; the first compression is the default.
COMPRESSIONS = {name: fmt.compressions for name, fmt in FORMATS.items()}
OutputFormat = Literal[tuple(FORMATS)]  # type: ignore[valid-type]  # built from the registry
DEFAULT_PARTITION_BY = "dt={timestamp:%Y-%m-%d}/hour={timestamp:%H}"
SECRET_WORDS = (
    "password",
    "secret",
    "key",
    "token",
    "credential",
    "sas",
    "connection_string",
    "jaas",
    "user.info",
)  # schema registry basic.auth.user.info is "user:password"


class DecodeSettings(_Section):
    format: Literal["json", "avro", "json_schema", "protobuf", "raw"] = Field(
        default="json",
        description="How message values are read: `json` (one JSON object per message); `avro`, `json_schema` or "
        "`protobuf` (Confluent wire format, schemas from `schema_registry`); `raw` (the value kept as bytes).",
    )
    schema_registry: dict[str, Any] = Field(
        default_factory=dict,
        description="confluent-kafka SchemaRegistryClient properties, passed through: `url`, "
        "`basic.auth.user.info`, `ssl.*`, `timeout`, ... Required by `avro`, `json_schema` and `protobuf`.",
    )
    tombstones: Literal["dead_letter", "skip", "row"] = Field(
        default="dead_letter",
        description="Messages with no value: dead-lettered, skipped (counted, not landed), or landed as a row "
        "whose payload columns are null.",
    )
    max_depth: int = Field(
        default=64, ge=1, le=100, description="JSON objects and arrays nested deeper than this are dead-lettered."
    )

    @model_validator(mode="after")
    def _wire_formats_need_a_registry(self) -> DecodeSettings:
        if self.format in ("avro", "json_schema", "protobuf") and not self.schema_registry.get("url"):
            raise ValueError(
                f"format {self.format} reads schemas from a schema registry. "
                'Fix: add `schema_registry: {url: "${SCHEMA_REGISTRY_URL}"}`'
            )
        return self


METADATA_COLUMNS = ("_topic", "_partition", "_offset", "_timestamp", "_key")  # what `metadata: true` adds
HEADERS_COLUMN = "_headers"  # Kafka headers: a list of {key, value}, asked for by name


class OutputSettings(_Section):
    url: str = Field(
        description="Where files land: any fsspec URL (`file://`, `s3://`, `abfs://`, `az://`, `gs://`). "
        "A relative `file://./...` URL is relative to the working directory."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for the store (credentials, endpoint); `${VAR}` expanded; never logged.",
    )
    format: OutputFormat = Field(default="parquet", description="The data files' format.")  # type: ignore[valid-type]
    compression: str | None = Field(
        default=None,
        description="parquet: `zstd`, `snappy`, `gzip` or `none`; ndjson: `gzip`, `zstd` or `none`. "
        "Unset: `zstd` for parquet, `gzip` for ndjson.",
    )
    partition_by: str = Field(
        default=DEFAULT_PARTITION_BY,
        description="Folder template under `url`: the record timestamp (UTC, strftime, `{timestamp:%H}`) "
        "and/or record fields (`{field.path}`, escaped Hive-style).",
    )
    # true: METADATA_COLUMNS; false: none; a list: those, in METADATA_COLUMNS order, and
    # `_headers` if listed (docs/headers.md). A list must hold all of METADATA_COLUMNS.
    metadata: bool | list[str] = Field(
        default=True,
        description="`true`: every row carries `_topic`, `_partition`, `_offset`, `_timestamp`, `_key`; "
        "`false`: none; a list of all five plus `_headers` adds the Kafka headers.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_columns_known(cls, value: bool | list[str]) -> bool | list[str]:
        if isinstance(value, bool):
            return value
        known = (*METADATA_COLUMNS, HEADERS_COLUMN)
        unknown = [name for name in value if name not in known]
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(
                f"unknown metadata column(s) {', '.join(unknown)}; {hint}the columns are {', '.join(known)}"
            )
        missing = [name for name in METADATA_COLUMNS if name not in value]
        if missing:
            raise ValueError(
                f"a metadata list must hold {', '.join(METADATA_COLUMNS)} (a subset is not supported); "
                f"missing {', '.join(missing)}. Fix: add them, or write `metadata: false` for none"
            )
        return list(dict.fromkeys(value))

    @property
    def metadata_columns(self) -> tuple[str, ...]:
        """The metadata columns every row carries, in the order they are written."""
        if self.metadata is False:
            return ()
        if self.metadata is True:
            return METADATA_COLUMNS
        return METADATA_COLUMNS + ((HEADERS_COLUMN,) if HEADERS_COLUMN in self.metadata else ())

    @property
    def with_headers(self) -> bool:
        return HEADERS_COLUMN in self.metadata_columns

    @model_validator(mode="after")
    def _compression_fits_format(self) -> OutputSettings:
        allowed = COMPRESSIONS[self.format]
        if self.compression is not None and self.compression not in allowed:
            raise ValueError(
                f"compression {self.compression!r} is not available for format {self.format}; "
                f"use one of: {', '.join(allowed)}"
            )
        return self

    @property
    def codec(self) -> str:
        return self.compression or COMPRESSIONS[self.format][0]


class BatchSettings(_Section):
    max_records: int = Field(
        default=100_000, gt=0, description="A partition's batch is published when it holds this many records."
    )
    max_bytes: ByteSize = Field(
        default=64 * 1024 * 1024, gt=0, description="... or this many key and value bytes (`64MiB`, `1GB`)."
    )
    max_age: Seconds = Field(
        default=60.0,
        gt=0,
        description="... or when its first record has waited this long (`500ms`, `60s`, "
        "`5m`); fires on an idle partition too.",
    )


class DeadLetterSettings(_Section):
    topic: str | None = Field(
        default=None,
        description="Kafka topic for dead letters: the original key, value and headers plus `ingest.error.*` "
        "headers; at least once.",
    )
    url: str | None = Field(
        default=None,
        description="fsspec URL for dead-letter NDJSON files, one per batch, exactly once. "
        "When neither is set: `{output.url}/_dlq`.",
    )


class EventsSettings(_Section):
    """Landed-batch events (docs/events.md): one per published batch, to a topic and/or an HTTP URL."""

    topic: str | None = Field(
        default=None,
        description="Kafka topic for landed-batch events, produced with the consumer's `kafka` properties; "
        "key = the event id.",
    )
    url: str | None = Field(default=None, description="http(s) URL each event is POSTed to as JSON.")

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("events are POSTed over HTTP. Fix: use an http:// or https:// URL, or events.topic")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.topic or self.url)


class MemorySettings(_Section):
    """One budget per process for everything held for batching (docs/sizing.md)."""

    limit: ByteSize | None = Field(
        default=None,
        description="One budget per process for librdkafka's prefetch, the message bytes held and the encoders' "
        f"working memory; unset: {MEMORY_SHARE:.0%} of `deploy.resources.memory`.",
    )


class HttpSettings(_Section):
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of `/healthz`, `/readyz` and `/metrics`; 0 turns the HTTP server off.",
    )


class Settings(_Section):
    topic: str = Field(description="The Kafka topic; one consumer (group) per topic.")
    group_id: str | None = Field(
        default=None, description="Consumer group; unset: `ingest-<topic>`. Add replicas to scale out."
    )
    kafka: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="librdkafka properties, passed through (`${VAR}` expanded). Set unless given: "
        "`auto.offset.reset=earliest`, `partition.assignment.strategy=cooperative-sticky` (`range` when "
        "`group.instance.id` is set: [guarantees.md](guarantees.md#rebalances)), a bounded prefetch, "
        "`session.timeout.ms=45000` (neither of the last two with `group.protocol: consumer`, where the broker assigns "
        "and keeps sessions), `enable.sparse.connections=false` (every broker connected at start: the group is joined "
        "in milliseconds); `enable.auto.commit` and `enable.auto.offset.store` are always false. A property "
        "librdkafka refuses stops `ingest validate` and `ingest run` with its name.",
    )
    decode: DecodeSettings = Field(default_factory=DecodeSettings)
    output: OutputSettings
    batch: BatchSettings = Field(default_factory=BatchSettings)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @field_validator("topic")
    @classmethod
    def _topic_is_a_kafka_name(cls, value: str) -> str:
        if not value or len(value) > 249 or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError(f"{value!r} is not a Kafka topic name; use letters, digits, '.', '_' or '-' (at most 249)")
        if value[0] in "._":
            raise ValueError(
                f"data files are named after the topic, and a name starting with {value[0]!r} is hidden from "
                "Spark and Auto Loader, which skip such files; topics starting with '_' or '.' are not supported yet"
            )
        return value

    @property
    def group(self) -> str:
        return self.group_id or f"ingest-{self.topic}"

    @property
    def memory_limit(self) -> int:
        """memory.limit, or its default: a fixed share of the pod's memory (deploy.resources.memory)."""
        if self.memory.limit is not None:
            return self.memory.limit
        return int(self.deploy.resources.memory_bytes * MEMORY_SHARE)


def is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact(value: Any, key: str = "") -> Any:
    """A copy of a settings tree with every secret-looking value replaced by '***'."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and is_secret_key(key) and value not in (None, ""):
        return "***"
    return value
