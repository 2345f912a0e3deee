"""The monitoring objects `ingest render` writes per topic, beside its Deployment.

Per topic, into `<name>.monitoring.yaml` (a file of its own: a cluster without the Prometheus
operator applies the rest and leaves this one out):
- a headless Service over the consumer pods' `http` port, which a ServiceMonitor needs;
- a ServiceMonitor (monitoring.coreos.com/v1) scraping /metrics through it;
- a PrometheusRule with the alerts of docs/kubernetes.md: lag growing, no commit for
  NO_COMMIT_AGES x batch.max_age while data waits, dead letters, storage errors, failed commits;
- a ConfigMap labelled `grafana_dashboard: "1"` holding a Grafana dashboard (the label Grafana's
  sidecar, as in kube-prometheus-stack, loads dashboards by).

Every query uses the series ingest_core/metrics.py exports (tests/test_render.py checks them
against a real scrape), filtered by the `topic` label that every series carries. Output is
deterministic: the same settings give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

from ingest_core.settings import Settings

NO_COMMIT_AGES = 3  # batches cut at max_age at the latest; 3 of them allow for a slow publish and a rebalance
MIN_WINDOW = 300  # seconds: a shorter window holds too few samples at a usual 30 s-1 min scrape interval
SCRAPE_INTERVAL = "30s"
LAG_WINDOW = "15m"  # lag must grow over this long, and then keep growing as long again, to alert
DASHBOARD_FILE_SUFFIX = ".json"
GRAFANA_UID_MAX = 40

# (api_version, kind, name, labels, **body) -> a manifest with the topic's metadata.
NewObject = Callable[..., dict[str, Any]]


def monitoring_documents(
    name: str, settings: Settings, labels: dict[str, str], selector: dict[str, str], new_object: NewObject
) -> list[dict[str, Any]]:
    """Service, ServiceMonitor, PrometheusRule and dashboard ConfigMap of one topic."""
    port = settings.http.port
    return [
        new_object(
            "v1",
            "Service",
            name,
            labels,
            spec={
                # Headless: nothing connects to it; it only lists the pods for Prometheus to scrape.
                "clusterIP": "None",
                "selector": selector,
                "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
            },
        ),
        new_object(
            "monitoring.coreos.com/v1",
            "ServiceMonitor",
            name,
            labels,
            spec={
                "selector": {"matchLabels": selector},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL}],
            },
        ),
        new_object(
            "monitoring.coreos.com/v1",
            "PrometheusRule",
            name,
            labels,
            spec={"groups": [{"name": f"lake-ingest.{settings.topic}", "rules": alert_rules(settings)}]},
        ),
        new_object(
            "v1",
            "ConfigMap",
            f"{name}-dashboard",
            {**labels, "grafana_dashboard": "1"},
            data={
                f"{name}{DASHBOARD_FILE_SUFFIX}": json.dumps(dashboard(name, settings), indent=1, sort_keys=True) + "\n"
            },
        ),
    ]


def no_commit_window(settings: Settings) -> int:
    """Seconds without a commit, while data waits, after which a consumer counts as stuck."""
    return max(MIN_WINDOW, math.ceil(NO_COMMIT_AGES * settings.batch.max_age))


def alert_rules(settings: Settings) -> list[dict[str, Any]]:
    t = f'topic="{settings.topic}"'  # Kafka topic names hold no character PromQL would need escaped
    lag = f"sum(ingest_partition_lag{{{t}}})"
    window = no_commit_window(settings)

    def rule(
        alert: str, expr: str, duration: str | None, severity: str, summary: str, description: str
    ) -> dict[str, Any]:
        found = {
            "alert": alert,
            "expr": expr,
            "labels": {"severity": severity, "topic": settings.topic},
            "annotations": {"summary": summary, "description": description},
        }
        return {**found, "for": duration} if duration else found

    return [
        rule(
            "IngestConsumerLagGrowing",
            f"{lag} > 0 and deriv({lag}[{LAG_WINDOW}:1m]) > 0",
            LAG_WINDOW,
            "warning",
            f"Consumers of {settings.topic} fall further behind",
            f"Lag of topic {settings.topic} has grown for {LAG_WINDOW} and is {{{{ $value }}}} messages behind. "
            "Add replicas (or raise deploy.keda.max_replicas), or look for a slow lake.",
        ),
        rule(
            "IngestNoCommit",
            f'sum(increase(ingest_commits_total{{{t},result="ok"}}[{window}s])) == 0 '
            f"and ({lag} > 0 or sum(ingest_buffered_bytes{{{t}}}) > 0)",
            "1m",
            "critical",
            f"No offset of {settings.topic} committed for {window} s while data waits",
            f"Nothing of topic {settings.topic} was committed for {window} s ({NO_COMMIT_AGES} x batch.max_age, "
            f"at least {MIN_WINDOW} s) although messages are buffered or waiting. Look at the pods' logs for "
            "storage or Kafka errors.",
        ),
        rule(
            "IngestDeadLetters",
            f"sum(increase(ingest_dead_letters_total{{{t}}}[10m])) > 0",
            None,
            "warning",
            f"Messages of {settings.topic} go to the dead letters",
            f"{{{{ $value }}}} messages of topic {settings.topic} were dead-lettered in 10 minutes: "
            "they did not decode or did not fit the schema. Read them from the dead-letter destination.",
        ),
        rule(
            "IngestStorageErrors",
            f"sum(increase(ingest_storage_retries_total{{{t}}}[5m])) > 0",
            "10m",
            "critical",
            f"The lake refuses writes of {settings.topic}",
            f"Storage calls of topic {settings.topic} have failed and been retried for 10 minutes; "
            "ingestion is paused until the lake answers (nothing is lost, lag grows).",
        ),
        rule(
            "IngestCommitsFailing",
            f'sum(increase(ingest_commits_total{{{t},result="failed"}}[10m])) > 0',
            "5m",
            "warning",
            f"Offset commits of {settings.topic} fail",
            f"Kafka refused commits of topic {settings.topic}; the batches replay after a restart "
            "(exactly-once markers keep them from landing twice).",
        ),
    ]


def dashboard(name: str, settings: Settings) -> dict[str, Any]:
    """A Grafana dashboard (schema 39) of one topic, on a selectable Prometheus data source."""
    t = f'topic="{settings.topic}"'
    rate = "[$__rate_interval]"
    panels = [
        ("Records landed / s", "short", [(f"sum(rate(ingest_records_total{{{t}}}{rate}))", "records")]),
        (
            "Bytes / s",
            "Bps",
            [
                (f"sum(rate(ingest_bytes_total{{{t}}}{rate}))", "published"),
                (f"sum(rate(ingest_consumed_bytes_total{{{t}}}{rate}))", "consumed"),
            ],
        ),
        (
            "Lag per partition (messages)",
            "short",
            [(f"max by (partition) (ingest_partition_lag{{{t}}})", "partition {{partition}}")],
        ),
        (
            "Seconds since the last published batch",
            "s",
            [(f"time() - max(ingest_last_flush_timestamp_seconds{{{t}}})", "seconds")],
        ),
        ("Commits / s", "short", [(f"sum by (result) (rate(ingest_commits_total{{{t}}}{rate}))", "{{result}}")]),
        (
            "Dead letters and storage retries",
            "short",
            [
                (f"sum(increase(ingest_dead_letters_total{{{t}}}{rate}))", "dead letters"),
                (f"sum(increase(ingest_storage_retries_total{{{t}}}{rate}))", "storage retries"),
                (f"sum(increase(ingest_schema_widenings_total{{{t}}}{rate}))", "columns widened to string"),
            ],
        ),
        (
            "Flush and commit latency (p95)",
            "s",
            [
                (
                    f"histogram_quantile(0.95, sum by (le) (rate(ingest_flush_duration_seconds_bucket{{{t}}}{rate})))",
                    "flush",
                ),
                (
                    f"histogram_quantile(0.95, sum by (le) (rate(ingest_commit_latency_seconds_bucket{{{t}}}{rate})))",
                    "commit",
                ),
            ],
        ),
        (
            "Bytes held per pod (not yet committed)",
            "bytes",
            [(f"sum by (pod) (ingest_buffered_bytes{{{t}}})", "{{pod}}")],
        ),
        ("Partitions per pod", "short", [(f"sum by (pod) (ingest_assigned_partitions{{{t}}})", "{{pod}}")]),
    ]
    return {
        "uid": dashboard_uid(name),
        "title": f"lake-ingest: {settings.topic}",
        "tags": ["lake-ingest"],
        "schemaVersion": 39,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"}]
        },
        "panels": [_panel(i, title, unit, targets) for i, (title, unit, targets) in enumerate(panels)],
    }


def dashboard_uid(name: str) -> str:
    """The resource name if it fits Grafana's 40 characters; else cut, with a hash of the whole
    name (long resource names differ only in their hash suffix, which a plain cut would drop)."""
    if len(name) <= GRAFANA_UID_MAX:
        return name
    return f"{name[: GRAFANA_UID_MAX - 7].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def _panel(index: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def queries(documents: list[dict[str, Any]]) -> list[str]:
    """Every PromQL expression in rendered monitoring documents (alerts and dashboard panels)."""
    found = []
    for document in documents:
        if document["kind"] == "PrometheusRule":
            found += [r["expr"] for g in document["spec"]["groups"] for r in g["rules"]]
        elif document["kind"] == "ConfigMap" and document["metadata"]["labels"].get("grafana_dashboard") == "1":
            for text in document["data"].values():
                found += [target["expr"] for panel in json.loads(text)["panels"] for target in panel["targets"]]
    return found
