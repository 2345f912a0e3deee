"""The `deploy` section: what `ingest render` writes for Kubernetes (pod size, replicas, KEDA,
shutdown timings). `ingest_core.settings` re-exports these models."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ingest_core.settings_base import Seconds, _Section
from ingest_core.units import parse_kubernetes_memory


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
