"""Typed settings of one consumer, validated from the merged YAML.

Every field has the default a data engineer would expect; unknown keys are
rejected (the loader turns that into a did-you-mean). Values that are secrets
(`kafka` SASL settings, `output.storage_options`) are never rendered by `redacted()`.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .budget import MEMORY_SHARE
from .units import parse_duration, parse_kubernetes_memory, parse_size

ByteSize = Annotated[int, BeforeValidator(parse_size)]
Seconds = Annotated[float, BeforeValidator(parse_duration)]

COMPRESSIONS = {
    "parquet": ("zstd", "snappy", "gzip", "none"),
    "ndjson": ("gzip", "zstd", "none"),
}
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    format: Literal["parquet", "ndjson"] = Field(default="parquet", description="The data files' format.")
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


class ResourceSettings(_Section):
    cpu: str = Field(default="500m", description="The pod's CPU request (no CPU limit is set).")
    # The process's budget (memory.limit) is a share of it: see the sizing table in docs/sizing.md.
    memory: str = Field(
        default="1Gi",
        description="The pod's memory request and limit (a Kubernetes quantity); "
        "`memory.limit` defaults to a share of it.",
    )

    @field_validator("memory")
    @classmethod
    def _is_a_kubernetes_quantity(cls, value: str) -> str:
        parse_kubernetes_memory(value)
        return value

    @property
    def memory_bytes(self) -> int:
        return parse_kubernetes_memory(self.memory)


class KedaSettings(_Section):
    """Autoscaling on consumer-group lag with a KEDA ScaledObject (`ingest render`)."""

    enabled: bool = Field(default=False, description="Scale on consumer-group lag with KEDA instead of `replicas`.")
    partitions: int | None = Field(
        default=None, ge=1, description="The topic's partition count (required when enabled): render works offline."
    )
    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas KEDA keeps.")
    max_replicas: int | None = Field(
        default=None, ge=1, description="Most replicas; unset: one per partition. More than `partitions` is an error."
    )
    lag_threshold: int = Field(default=10_000, gt=0, description="Target consumer lag per replica.")
    # Records buffered and not yet committed count as lag, so it must be longer than
    # batch.max_age (`ingest validate` checks it).
    cooldown: Seconds = Field(
        default=300.0,
        gt=0,
        description="How long KEDA waits after the last trigger before scaling down; longer than `batch.max_age`.",
    )

    @model_validator(mode="after")
    def _fits_partitions(self) -> KedaSettings:
        if not self.enabled:
            return self
        if self.partitions is None:
            raise ValueError(
                "enabled needs the topic's partition count. Fix: add `partitions: N` (kafka-topics --describe shows it)"
            )
        if self.max_replicas is not None and self.max_replicas > self.partitions:
            raise ValueError(
                f"max_replicas {self.max_replicas} is more than the {self.partitions} partitions; "
                "the extra consumers would sit idle. Fix: lower max_replicas"
            )
        if self.min_replicas > (self.max_replicas or self.partitions):
            raise ValueError("min_replicas is more than max_replicas. Fix: lower min_replicas")
        return self


class DeploySettings(_Section):
    replicas: int = Field(
        default=1, ge=0, description="Pods for the topic; no more than its partitions (extra members sit idle)."
    )
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    image: str = Field(default="lake-ingest:0.2.0", description="The image built from `deploy/Dockerfile`.")
    namespace: str | None = Field(
        default=None, description="Namespace of every rendered object; unset: the one `kubectl` uses."
    )
    secret_name: str | None = Field(
        default=None, description="The Secret holding this topic's credentials; unset: `ingest-<topic>`."
    )
    service_account: str | None = Field(
        default=None, description="The pods' service account, e.g. one bound to a cloud identity for the lake."
    )
    keda: KedaSettings = Field(default_factory=KedaSettings)
    # Kubernetes kills the pod at termination_grace_period, which must cover shutdown_timeout
    # and a final flush of the memory budget (`ingest validate` checks it).
    shutdown_timeout: Seconds = Field(
        default=30.0,
        gt=0,
        description="After SIGTERM, how long `ingest run` retries storage to publish "
        "and commit what it holds before exiting 3.",
    )
    termination_grace_period: Seconds = Field(
        default=60.0,
        gt=0,
        description="The pod's termination grace period; covers `shutdown_timeout` and a final flush.",
    )


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
        "`auto.offset.reset=earliest`, `partition.assignment.strategy=cooperative-sticky`, a bounded prefetch, "
        "`session.timeout.ms=45000`; `enable.auto.commit` and `enable.auto.offset.store` are always false.",
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
