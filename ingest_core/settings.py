"""Typed settings of one consumer, validated from the merged YAML.

Every field has the default a data engineer would expect; unknown keys are
rejected (the loader turns that into a did-you-mean). Values that are secrets
(`kafka` SASL settings, `output.storage_options`) are never rendered by `redacted()`.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ingest_core.batching.budget import MEMORY_SHARE
from ingest_core.sink.formats import FORMATS
from ingest_core.units import parse_duration, parse_kubernetes_memory, parse_size

ByteSize = Annotated[int, BeforeValidator(parse_size)]
Seconds = Annotated[float, BeforeValidator(parse_duration)]

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecodeSettings(_Section):
    format: Literal["json", "avro", "json_schema", "protobuf", "raw"] = "json"
    # confluent-kafka SchemaRegistryClient properties: url, basic.auth.user.info, ssl.*, timeout, ...
    schema_registry: dict[str, Any] = Field(default_factory=dict)
    tombstones: Literal["dead_letter", "skip", "row"] = "dead_letter"  # messages with no value
    max_depth: int = Field(default=64, ge=1, le=100)  # JSON objects/arrays nested deeper are dead-lettered

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
    url: str
    storage_options: dict[str, Any] = Field(default_factory=dict)
    format: OutputFormat = "parquet"  # type: ignore[valid-type]
    compression: str | None = None  # None: the format's default (zstd for parquet, gzip for ndjson)
    partition_by: str = DEFAULT_PARTITION_BY
    # true: METADATA_COLUMNS; false: none; a list: those, in METADATA_COLUMNS order, and
    # `_headers` if listed (docs/headers.md). A list must hold all of METADATA_COLUMNS.
    metadata: bool | list[str] = True

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
    max_records: int = Field(default=100_000, gt=0)
    max_bytes: ByteSize = Field(default=64 * 1024 * 1024, gt=0)
    max_age: Seconds = Field(default=60.0, gt=0)


class DeadLetterSettings(_Section):
    topic: str | None = None
    url: str | None = None


class EventsSettings(_Section):
    """Landed-batch events (docs/events.md): one per published batch, to a topic and/or an HTTP URL."""

    topic: str | None = None  # produced with the consumer's kafka properties, key = the event id
    url: str | None = None  # http(s)://...: each event POSTed as JSON

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
    cpu: str = "500m"
    # The pod's memory request and limit. The process's budget (memory.limit) is a share of it:
    # see ingest_core/budget.py and the sizing table in docs/sizing.md.
    memory: str = "1Gi"

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

    enabled: bool = False
    partitions: int | None = Field(default=None, ge=1)  # the topic's partition count: render works offline
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)  # None: one replica per partition
    lag_threshold: int = Field(default=10_000, gt=0)  # target lag per replica
    # How long KEDA waits after the last trigger before scaling down. Records buffered and not
    # yet committed count as lag, so it must be longer than batch.max_age (`ingest validate`).
    cooldown: Seconds = Field(default=300.0, gt=0)

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
    replicas: int = Field(default=1, ge=0)
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    image: str = "lake-ingest:0.2.0"
    namespace: str | None = None  # None: the namespace `kubectl apply` uses
    secret_name: str | None = None  # None: ingest-<topic>, the Secret holding this topic's credentials
    service_account: str | None = None  # e.g. one bound to a cloud identity for the lake
    keda: KedaSettings = Field(default_factory=KedaSettings)
    # After SIGTERM, `ingest run` publishes and commits what it holds, retrying storage for at
    # most shutdown_timeout; Kubernetes kills the pod at termination_grace_period, which must
    # cover that and a final flush of the memory budget (`ingest validate` checks it).
    shutdown_timeout: Seconds = Field(default=30.0, gt=0)
    termination_grace_period: Seconds = Field(default=60.0, gt=0)


class MemorySettings(_Section):
    """One budget per process for everything held for batching (ingest_core/budget.py)."""

    limit: ByteSize | None = None  # None: MEMORY_SHARE of deploy.resources.memory


class HttpSettings(_Section):
    port: int = Field(default=8080, ge=0, le=65535)  # 0 turns the HTTP server off


class Settings(_Section):
    topic: str
    group_id: str | None = None
    kafka: dict[str, str | int | float | bool] = Field(default_factory=dict)
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
