"""The Kubernetes objects `ingest render` makes for one topic: the Deployment (with its
container, probes, security context and config mount) and, with `deploy.keda.enabled`, the KEDA
ScaledObject and TriggerAuthentication. render.py assembles them with the ConfigMap and the
PodDisruptionBudget and writes the files."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from ingest_core.commands.render_secrets import WHOLE_REFERENCE, secret_variable
from ingest_core.config import ConfigError
from ingest_core.settings import Settings

SHARED_ENV_CONFIGMAP = "ingest-env"  # fleet-wide, optional: KAFKA_BOOTSTRAP_SERVERS, LAKE_ROOT, ...
CONFIG_DIR = "/config"
RUN_AS = 10001  # the non-root user of deploy/Dockerfile
KEDA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer",
}


def k8s_object(
    api_version: str, kind: str, name: str, settings: Settings, labels: dict[str, str], **body: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": {"lake-ingest/topic": settings.topic}}
    if settings.deploy.namespace:
        metadata["namespace"] = settings.deploy.namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def selector(labels: dict[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def deployment(
    name: str, settings: Settings, labels: dict[str, str], config_text: str, secret_name: str, secret_env: set[str]
) -> dict[str, Any]:
    deploy, port = settings.deploy, settings.http.port
    env = [
        # Static membership: a container restarted in the same pod rejoins without a rebalance.
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # The root filesystem is read-only; libraries that cache under ~ (cloud SDKs) get /tmp.
        {"name": "HOME", "value": "/tmp"},
    ] + [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": var}}} for var in secret_env]
    container: dict[str, Any] = {
        "name": "ingest",
        "image": deploy.image,
        "imagePullPolicy": "IfNotPresent",
        # The image's entrypoint is `ingest run /config/topic.yaml`; this only makes the timeout explicit.
        "args": ["--shutdown-timeout", f"{deploy.shutdown_timeout:g}s"],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": sorted(env, key=lambda e: e["name"]),
        # Values shared by the fleet (bootstrap servers, lake root) come from one optional ConfigMap.
        "envFrom": [{"configMapRef": {"name": SHARED_ENV_CONFIGMAP, "optional": True}}],
        # No CPU limit: throttling a consumer only makes it lag; memory is bounded by batch.max_bytes.
        "resources": {
            "requests": {"cpu": deploy.resources.cpu, "memory": deploy.resources.memory},
            "limits": {"memory": deploy.resources.memory},
        },
        # Liveness: the loop turns every poll (0.5 s); a revoke or a slow commit may hold it for seconds.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 2,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod: dict[str, Any] = {
        "metadata": {
            "labels": labels,
            "annotations": {
                # A changed ConfigMap rolls the pods (a mounted ConfigMap is not re-read by `ingest run`).
                "lake-ingest/config-sha256": hashlib.sha256(config_text.encode()).hexdigest()
            },
        },
        "spec": {
            "automountServiceAccountToken": False,  # the consumer never calls the Kubernetes API
            # SIGTERM → publish + commit every buffer (retrying storage up to shutdown_timeout) →
            # leave the group; `ingest validate` checks that this covers it.
            "terminationGracePeriodSeconds": math.ceil(deploy.termination_grace_period),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": name}}, {"name": "tmp", "emptyDir": {}}],
        },
    }
    if deploy.service_account:
        pod["spec"]["serviceAccountName"] = deploy.service_account
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(labels)},
        # Never surge: readiness needs assigned partitions, and a surplus member gets none, so a
        # surge pod would never become ready and the rollout would stall. Replace one at a time.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        "template": pod,
    }
    if not deploy.keda.enabled:
        spec["replicas"] = deploy.replicas  # with KEDA the ScaledObject owns the count
    deployment = k8s_object("apps/v1", "Deployment", name, settings, labels, spec=spec)
    if secret_env:
        deployment["metadata"]["annotations"]["lake-ingest/secret-keys"] = ",".join(sorted(secret_env))
    return deployment


def keda_objects(
    path: Path, name: str, settings: Settings, labels: dict[str, str], kafka: dict[str, Any], secret_name: str
) -> list[dict[str, Any]]:
    keda = settings.deploy.keda
    metadata = {
        "consumerGroup": settings.group,
        "topic": settings.topic,
        "lagThreshold": str(keda.lag_threshold),
        "offsetResetPolicy": str(settings.kafka.get("auto.offset.reset", "earliest")),
        "allowIdleConsumers": "false",
    }
    bootstrap = str(kafka.get("bootstrap.servers", "localhost:9092"))
    whole = WHOLE_REFERENCE.match(bootstrap)
    if whole:
        metadata["bootstrapServersFromEnv"] = whole.group(1)  # KEDA reads it from the container's env
    elif "${" in bootstrap:
        raise ConfigError(
            [
                f"{path}: kafka.bootstrap.servers: KEDA needs a literal list or a single ${{VAR}}. "
                "Fix: use `${KAFKA_BOOTSTRAP_SERVERS}` alone, or set deploy.keda.enabled: false"
            ]
        )
    else:
        metadata["bootstrapServers"] = bootstrap
    protocol = str(settings.kafka.get("security.protocol", "PLAINTEXT")).upper()
    if protocol in ("SSL", "SASL_SSL"):
        metadata["tls"] = "enable"
    trigger: dict[str, Any] = {"type": "kafka", "metadata": metadata}
    documents = []
    if protocol.startswith("SASL"):
        mechanism = str(settings.kafka.get("sasl.mechanisms", settings.kafka.get("sasl.mechanism", "GSSAPI")))
        if mechanism.upper() not in KEDA_SASL:
            raise ConfigError(
                [
                    f"{path}: kafka.sasl.mechanisms: {mechanism!r} cannot be rendered for KEDA; "
                    f"use one of {', '.join(KEDA_SASL)}, or set deploy.keda.enabled: false"
                ]
            )
        metadata["sasl"] = KEDA_SASL[mechanism.upper()]
        refs = [
            {"parameter": parameter, "name": secret_name, "key": variable}
            for parameter, variable in sorted(_sasl_variables(kafka).items())
        ]
        documents.append(
            k8s_object(
                "keda.sh/v1alpha1", "TriggerAuthentication", name, settings, labels, spec={"secretTargetRef": refs}
            )
        )
        trigger["authenticationRef"] = {"name": name}
    documents.append(
        k8s_object(
            "keda.sh/v1alpha1",
            "ScaledObject",
            name,
            settings,
            labels,
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicaCount": keda.min_replicas,
                "maxReplicaCount": keda.max_replicas or keda.partitions,
                "pollingInterval": 30,
                # Scaling down revokes partitions and flushes small files; wait out short dips in lag.
                "cooldownPeriod": math.ceil(keda.cooldown),
                "triggers": [trigger],
            },
        )
    )
    return documents


def _sasl_variables(kafka: dict[str, Any]) -> dict[str, str]:
    """KEDA's parameter → the environment variable (= Secret key) that holds it in the pod."""
    return {
        parameter: secret_variable(f"kafka.{key}", kafka[key])
        for parameter, key in (("username", "sasl.username"), ("password", "sasl.password"))
        if key in kafka
    }
