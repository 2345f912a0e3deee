"""`ingest render`: valid, deterministic manifests that carry no secret, and a committed
deploy/k8s/generated/ that matches consumers/."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingest_core.commands.render import render_all, resource_name
from ingest_core.commands.render_monitoring import MIN_WINDOW, NO_COMMIT_AGES, dashboard_uid, queries
from ingest_core.config import ConfigError, load_settings
from ingest_core.ops.metrics import PrometheusObserver

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "deploy" / "k8s" / "generated"
KUBERNETES = "1.37"  # the newest schemas kubernetes-validate ships

# Secret values that must never reach a manifest, a log line or an error message.
SECRETS = {
    "sasl.password": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=Pw-4f9a1c",
    "sasl.username": "svc-user-77d2",
    "storage.key": "AKIA-KEY-5b8e",
    "storage.secret": "S3-SECRET-90c1",
    "default": "DEFAULT-SECRET-1e4d",
    "account_key": "AZ-ACCOUNT-KEY-3f3f",
}
SASL_TOPIC = f"""\
extends: defaults.yaml
topic: payments.v2
kafka:
  bootstrap.servers: ${{KAFKA_BOOTSTRAP_SERVERS}}
  security.protocol: SASL_SSL
  sasl.mechanisms: PLAIN
  sasl.username: {SECRETS["sasl.username"]}
  sasl.password: "{SECRETS["sasl.password"]}"
output:
  url: s3://bucket/lake/payments
  storage_options:
    key: {SECRETS["storage.key"]}
    secret: "${{AWS_SECRET_ACCESS_KEY:-{SECRETS["default"]}}}"
    client_kwargs: {{endpoint_url: "http://minio:9000"}}
deploy:
  namespace: lake
  image: registry.example/lake-ingest:0.1.0
  service_account: lake-writer
  keda: {{enabled: true, partitions: 6, max_replicas: 4, lag_threshold: 5000}}
"""
AZURE_TOPIC = f"""\
topic: clicks
kafka: {{bootstrap.servers: "kafka-0.kafka:9092,kafka-1.kafka:9092"}}
output:
  url: abfs://lake/clicks
  storage_options: {{account_name: lakeacct, account_key: {SECRETS["account_key"]}}}
deploy: {{replicas: 3, resources: {{cpu: "1", memory: 1Gi}}, keda: {{enabled: true, partitions: 3}}}}
"""

CUSTOM_KINDS = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}  # CRDs: judged by a real API server


def validate_manifest(document: dict) -> bool:
    """Built-in kinds against the API's schemas (strict), offline; False for a custom resource,
    which tests/integration/test_kubernetes.py applies to a real API server with the real CRDs."""
    if document["apiVersion"] in CUSTOM_KINDS:
        return False
    kubernetes_validate.validate(document, KUBERNETES, strict=True)
    return True


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(text: str) -> dict[str, dict]:
    return {d["kind"]: d for d in documents(text)}


def cli(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.fixture
def fleet(tmp_path) -> Path:
    folder = tmp_path / "consumers"
    folder.mkdir()
    shutil.copy(REPO / "consumers" / "defaults.yaml", folder)
    (folder / "payments.v2.yaml").write_text(SASL_TOPIC)
    (folder / "clicks.yaml").write_text(AZURE_TOPIC)
    return folder


@pytest.fixture
def rendered(fleet, tmp_path) -> dict[str, str]:
    out = tmp_path / "out"
    result = cli("render", str(fleet), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


# ---- the committed folder ----

def test_generated_folder_is_up_to_date_with_consumers(tmp_path):
    fresh = tmp_path / "generated"
    result = cli("render", "consumers/", "--out", str(fresh))
    assert result.returncode == 0, result.stderr
    expected = {p.name: p.read_text() for p in fresh.iterdir()}
    committed = {p.name: p.read_text() for p in GENERATED.iterdir()}
    assert committed == expected, "deploy/k8s/generated/ is stale: run `ingest render consumers/ --out deploy/k8s/generated/`"
    check = cli("render", "consumers/", "--out", "deploy/k8s/generated/", "--check")
    assert check.returncode == 0, check.stderr


def test_every_committed_manifest_validates():
    files = sorted(GENERATED.glob("*.yaml"))
    assert files
    checked = [validate_manifest(document) for path in files for document in documents(path.read_text())]
    assert checked.count(True) >= 5  # ConfigMap, Deployment, PDB, Service, dashboard ConfigMap


def test_check_reports_a_stale_a_missing_and_an_orphaned_file(fleet, tmp_path):
    out = tmp_path / "out"
    assert cli("render", str(fleet), "--out", str(out)).returncode == 0
    clicks = out / "ingest-clicks.yaml"
    clicks.write_text(clicks.read_text().replace("replicas: 3", "replicas: 4"))
    (fleet / "extra.yaml").write_text("topic: extra\noutput: {url: 's3://b/extra'}\n")
    (out / "ingest-gone.yaml").write_text("# Generated by `ingest render` from gone.yaml\n")
    (out / "kustomization.yaml").write_text("resources: []\n")  # not ours: never reported or removed
    result = cli("render", str(fleet), "--out", str(out), "--check")
    assert result.returncode == 1
    assert f"{clicks}: stale" in result.stderr
    assert f"{out / 'ingest-extra.yaml'}: missing" in result.stderr
    assert "ingest-gone.yaml: no consumer YAML renders it any more" in result.stderr
    assert "kustomization" not in result.stderr and "Fix: ingest render" in result.stderr

    assert cli("render", str(fleet), "--out", str(out)).returncode == 0
    assert not (out / "ingest-gone.yaml").exists() and (out / "kustomization.yaml").exists()
    assert cli("render", str(fleet), "--out", str(out), "--check").returncode == 0


# ---- what the manifests say ----

def test_rendered_manifests_validate_strictly(rendered):
    assert sorted(rendered) == ["ingest-clicks.monitoring.yaml", "ingest-clicks.yaml",
                                "ingest-payments-v2-1be535.monitoring.yaml", "ingest-payments-v2-1be535.yaml"]
    kinds = []
    for text in rendered.values():
        for document in documents(text):
            built_in = validate_manifest(document)
            assert built_in == (document["apiVersion"] not in CUSTOM_KINDS)
            kinds.append(document["kind"])
    per_topic = ["ConfigMap", "Deployment", "PodDisruptionBudget", "ScaledObject",
                 "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"]
    assert sorted(kinds) == sorted(per_topic * 2 + ["TriggerAuthentication"])


def test_strict_validation_catches_a_misspelled_field(rendered):
    deployment = by_kind(rendered["ingest-clicks.yaml"])["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(deployment)


def test_deployment_runs_the_topic_config_safely(rendered):
    kinds = by_kind(rendered["ingest-clicks.yaml"])
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["--shutdown-timeout", "30s"]  # after `ingest run /config/topic.yaml`
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert {"name": "config", "mountPath": "/config", "readOnly": True} in container["volumeMounts"]
    assert {"name": "config", "configMap": {"name": "ingest-clicks"}} in pod["volumes"]
    assert pod["terminationGracePeriodSeconds"] == 60  # deploy.termination_grace_period's default
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert "replicas" not in kinds["Deployment"]["spec"], "KEDA owns the replica count"
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    scaled = kinds["ScaledObject"]["spec"]
    assert scaled["maxReplicaCount"] == 3 and scaled["scaleTargetRef"]["name"] == "ingest-clicks"
    assert scaled["triggers"][0]["metadata"]["bootstrapServers"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert scaled["triggers"][0]["metadata"]["consumerGroup"] == "ingest-clicks"


def test_config_map_means_the_same_config_in_the_pod(rendered, fleet, tmp_path):
    """The ConfigMap's topic.yaml, with the Secret's keys in the environment, loads to the same
    settings as the source file, plus group.instance.id from the pod's name."""
    kinds = by_kind(rendered["ingest-payments-v2-1be535.yaml"])
    mounted = tmp_path / "topic.yaml"
    mounted.write_text(kinds["ConfigMap"]["data"]["topic.yaml"])
    keys = kinds["Deployment"]["metadata"]["annotations"]["lake-ingest/secret-keys"].split(",")
    assert keys == ["AWS_SECRET_ACCESS_KEY", "INGEST_KAFKA_SASL_PASSWORD", "INGEST_KAFKA_SASL_USERNAME",
                    "INGEST_OUTPUT_STORAGE_OPTIONS_KEY"]
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9093", "POD_NAME": "ingest-payments-v2-1be535-7d9-abcde",
           "INGEST_KAFKA_SASL_PASSWORD": SECRETS["sasl.password"], "INGEST_KAFKA_SASL_USERNAME": SECRETS["sasl.username"],
           "INGEST_OUTPUT_STORAGE_OPTIONS_KEY": SECRETS["storage.key"], "AWS_SECRET_ACCESS_KEY": SECRETS["default"]}
    in_pod = load_settings(mounted, environ=env)
    source = load_settings(fleet / "payments.v2.yaml", environ={"KAFKA_BOOTSTRAP_SERVERS": "k:9093"})
    assert in_pod.kafka.pop("group.instance.id") == env["POD_NAME"]
    assert in_pod == source


def test_sasl_and_keda_auth_come_from_the_topic_secret(rendered):
    kinds = by_kind(rendered["ingest-payments-v2-1be535.yaml"])
    name = "ingest-payments-v2-1be535"
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert from_secret["INGEST_KAFKA_SASL_PASSWORD"] == {"name": name, "key": "INGEST_KAFKA_SASL_PASSWORD"}
    assert len(from_secret) == 4
    assert container["envFrom"] == [{"configMapRef": {"name": "ingest-env", "optional": True}}]
    assert kinds["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "lake-writer"
    assert all(d["metadata"]["namespace"] == "lake" for d in kinds.values())
    auth = kinds["TriggerAuthentication"]["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "password", "name": name, "key": "INGEST_KAFKA_SASL_PASSWORD"},
                    {"parameter": "username", "name": name, "key": "INGEST_KAFKA_SASL_USERNAME"}]
    trigger = kinds["ScaledObject"]["spec"]["triggers"][0]
    assert trigger["authenticationRef"] == {"name": name}
    assert trigger["metadata"] == {
        "bootstrapServersFromEnv": "KAFKA_BOOTSTRAP_SERVERS", "consumerGroup": "ingest-payments.v2",
        "topic": "payments.v2", "lagThreshold": "5000", "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false", "sasl": "plaintext", "tls": "enable"}
    assert kinds["ScaledObject"]["spec"]["maxReplicaCount"] == 4


def test_no_secret_in_manifests_or_in_what_render_prints(fleet, tmp_path):
    out = tmp_path / "out"
    result = cli("render", str(fleet), "--out", str(out))
    assert result.returncode == 0, result.stderr
    everything = result.stdout + result.stderr + "".join(p.read_text() for p in out.iterdir())
    for secret in SECRETS.values():
        assert secret not in everything
    assert "must hold AWS_SECRET_ACCESS_KEY, INGEST_KAFKA_SASL_PASSWORD" in result.stdout


def test_no_secret_in_error_messages_of_render_or_validate(fleet):
    # A broken file next to the secrets: the problems are reported, the secrets are not.
    (fleet / "payments.v2.yaml").write_text(SASL_TOPIC.replace("max_replicas: 4", "max_replicas: 9")
                                            + "batch: {max_recods: 5}\n")
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    for command in ("render", "validate"):
        result = cli(command, str(fleet), *(["--out", str(fleet / "out")] if command == "render" else []), env=env)
        assert result.returncode == 1
        assert "deploy.keda" in result.stderr and "did you mean `max_records`" in result.stderr
        for secret in SECRETS.values():
            assert secret not in result.stdout + result.stderr
    assert not (fleet / "out").exists(), "nothing is written unless every topic renders"


def test_a_wrong_typed_secret_is_not_echoed_in_errors(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(f"topic: t\noutput: {{url: 's3://b/t', storage_options: 'secret={SECRETS['storage.secret']}'}}\n")
    result = cli("validate", str(path))
    assert result.returncode == 1 and "output.storage_options" in result.stderr
    assert SECRETS["storage.secret"] not in result.stderr


def test_output_ignores_the_environment_of_the_machine_that_renders(fleet, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert cli("render", str(fleet), "--out", str(first)).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092",
           "AWS_SECRET_ACCESS_KEY": "from-my-laptop", "LAKE_ROOT": "s3://other"}
    result = cli("render", str(fleet), "--out", str(second), env=env)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in first.iterdir()} == {p.name: p.read_bytes() for p in second.iterdir()}
    assert "from-my-laptop" not in "".join(p.read_text() for p in second.iterdir())


# ---- monitoring ----

def scraped_series(topic: str) -> dict[str, set[str]]:
    """{sample name: its label names} as a real scrape of ingest_core/metrics.py shows them, every hook fed once."""
    observer = PrometheusObserver(topic, lag_provider=lambda: {0: 5})
    observer.flushed(0, rows=10, nbytes=100, files=1, dead_letters=1, widened=1, seconds=0.5)
    observer.committed(0, offset=10, seconds=0.01, ok=True)
    observer.storage_retry(0, attempt=1)
    observer.consumed(10, 100)
    observer.buffered(100)
    text = generate_latest(observer.registry).decode()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


# Labels Prometheus adds to every scraped series from the target (the ServiceMonitor's Service and pod).
TARGET_LABELS = {"pod", "namespace", "service", "instance", "job", "container", "endpoint"}


def unknown_series(query: str, series: dict[str, set[str]]) -> list[str]:
    """Metric names, and label names in their selectors and `by (...)`, that the scrape does not have."""
    problems = []
    for name, selector in re.findall(r"\b(ingest_[a-z_]+)(?:\{([^}]*)\})?", query):
        if name not in series:
            problems.append(name)
            continue
        labels = set(re.findall(r"(\w+)\s*=", selector))
        problems += [f"{name}{{{label}}}" for label in labels - series[name]]
    for grouping in re.findall(r"by \(([^)]*)\)", query):
        known = set().union(*series.values()) | TARGET_LABELS
        problems += [f"by ({label})" for label in map(str.strip, grouping.split(",")) if label not in known]
    return problems


def test_alerts_and_dashboard_query_only_series_that_metrics_exports(rendered):
    series = scraped_series("clicks")
    found = queries(documents(rendered["ingest-clicks.monitoring.yaml"]))
    assert len(found) >= 5 + 9  # five alerts, nine panels
    assert {q: unknown_series(q, series) for q in found if unknown_series(q, series)} == {}
    # the check bites: the name prometheus_client does not expose (no `_total`) is reported
    assert unknown_series('sum(increase(ingest_dead_letters{topic="clicks"}[10m]))', series) == ["ingest_dead_letters"]
    assert unknown_series('sum by (partitoin) (ingest_partition_lag{topic="clicks"})', series) == ["by (partitoin)"]


def test_every_query_is_filtered_to_its_topic(rendered):
    found = queries(documents(rendered["ingest-payments-v2-1be535.monitoring.yaml"]))
    for query in found:
        selectors = re.findall(r"\bingest_[a-z_]+(\{[^}]*\})?", query)
        assert selectors and all('topic="payments.v2"' in s for s in selectors), query


def test_service_monitor_scrapes_the_pods_http_port(rendered):
    workload = by_kind(rendered["ingest-clicks.yaml"])
    monitoring = by_kind(rendered["ingest-clicks.monitoring.yaml"])
    pod = workload["Deployment"]["spec"]["template"]
    container_port = pod["spec"]["containers"][0]["ports"][0]
    service = monitoring["Service"]["spec"]
    assert service["selector"] == workload["Deployment"]["spec"]["selector"]["matchLabels"]
    assert set(service["selector"].items()) <= set(pod["metadata"]["labels"].items())
    assert service["ports"] == [{"name": "http", "port": 8080, "targetPort": container_port["name"], "protocol": "TCP"}]
    monitor = monitoring["ServiceMonitor"]["spec"]
    assert set(monitor["selector"]["matchLabels"].items()) <= set(monitoring["Service"]["metadata"]["labels"].items())
    assert monitor["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


def test_dashboard_is_a_configmap_the_grafana_sidecar_loads(rendered):
    dashboard_map = by_kind(rendered["ingest-clicks.monitoring.yaml"])["ConfigMap"]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (filename, text), = dashboard_map["data"].items()
    dashboard = json.loads(text)
    assert filename == "ingest-clicks.json" and dashboard["uid"] == "ingest-clicks"
    assert dashboard["title"] == "lake-ingest: clicks" and len(dashboard["panels"]) == 9
    assert len({p["id"] for p in dashboard["panels"]}) == 9
    assert all(t["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] for t in p["targets"])


def test_dashboard_uids_fit_grafana_and_stay_distinct_for_long_topics():
    names = [resource_name(t) for t in ("x" * 249, "x" * 250, "orders", "a" * 33)]
    uids = [dashboard_uid(n) for n in names]
    assert uids[2] == "ingest-orders" and uids[3] == names[3]  # 40 characters: kept whole
    assert len(set(uids)) == 4 and all(len(u) <= 40 for u in uids)


@pytest.mark.parametrize("max_age, window", [("10s", 300), ("60s", 300), ("10m", 1800)])
def test_no_commit_alert_waits_n_batch_ages(tmp_path, max_age, window):
    path = tmp_path / "t.yaml"
    path.write_text(f"topic: t\noutput: {{url: 's3://b/t'}}\nbatch: {{max_age: {max_age}}}\n")
    rules = by_kind(render_all([path])[0].files["ingest-t.monitoring.yaml"])["PrometheusRule"]
    alerts = {r["alert"]: r for r in rules["spec"]["groups"][0]["rules"]}
    assert sorted(alerts) == ["IngestCommitsFailing", "IngestConsumerLagGrowing", "IngestDeadLetters",
                              "IngestNoCommit", "IngestStorageErrors"]
    assert f'ingest_commits_total{{topic="t",result="ok"}}[{window}s]' in alerts["IngestNoCommit"]["expr"]
    assert window == max(MIN_WINDOW, NO_COMMIT_AGES * load_settings(path).batch.max_age)


# ---- names and errors ----

def test_resource_names_are_dns_names_and_lossy_ones_stay_distinct():
    assert resource_name("orders") == "ingest-orders"
    names = {resource_name(t) for t in ("Orders", "orders.v2", "orders_v2", "orders-v2", "x" * 249, "x" * 250)}
    assert len(names) == 6 and "ingest-orders-v2" in names
    assert all(len(n) <= 47 and n == n.lower() and n[-1].isalnum() for n in names)


@pytest.mark.parametrize("text, expected", [
    ("http: {port: 0}", ["http.port", "probes", "Fix: set `http: {port: 8080}`"]),
    ("deploy: {keda: {enabled: true}}", ["deploy.keda", "partition count", "Fix: add `partitions: N`"]),
    ("deploy: {keda: {enabled: true, partitions: 3, max_replicas: 5}}", ["deploy.keda", "max_replicas 5",
                                                                         "Fix: lower max_replicas"]),
    ("deploy: {keda: {enabled: true, partitions: 3}}\nkafka: {bootstrap.servers: 'k-${N}:9092'}",
     ["kafka.bootstrap.servers", "single ${VAR}"]),
    ("deploy: {keda: {enabled: true, partitions: 3}}\nkafka: {security.protocol: SASL_SSL, sasl.mechanisms: GSSAPI}",
     ["kafka.sasl.mechanisms", "'GSSAPI' cannot be rendered for KEDA"]),
])
def test_problems_name_the_file_the_key_and_the_fix(tmp_path, text, expected):
    path = tmp_path / "t.yaml"
    path.write_text("topic: t\noutput: {url: 's3://b/t'}\n" + text + "\n")
    result = cli("render", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert str(path) in result.stderr and "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr


def test_two_files_for_one_topic_are_refused(fleet):
    (fleet / "clicks-again.yaml").write_text(AZURE_TOPIC)
    with pytest.raises(ConfigError) as caught:
        render_all(sorted(fleet.glob("c*.yaml")))
    assert f"{fleet / 'clicks.yaml'}: topic: renders to ingest-clicks, as {fleet / 'clicks-again.yaml'} does" \
        in str(caught.value)


def test_local_lake_and_localhost_broker_are_warned_about(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("topic: t\noutput: {url: 'file:///data/t'}\n")
    result = cli("render", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0
    assert "output.url: file:///data/t lands on the pod's local disk" in result.stderr
    assert "kafka.bootstrap.servers: is localhost" in result.stderr


# ---- a new stream, as a person adds one ----

def test_a_new_stream_is_copied_validated_rendered_and_valid_in_under_a_minute(tmp_path):
    began = time.monotonic()
    folder = tmp_path / "consumers"
    folder.mkdir()
    for name in ("example.yaml", "defaults.yaml"):
        shutil.copy(REPO / "consumers" / name, folder)
    out = tmp_path / "generated"
    assert cli("new", "refunds", "--dir", str(folder)).returncode == 0
    validated = cli("validate", str(folder))
    assert validated.returncode == 0, validated.stderr
    assert f"{folder / 'refunds.yaml'}: ok" in validated.stdout
    assert cli("render", str(folder), "--out", str(out)).returncode == 0
    manifests = sorted(str(p) for p in out.glob("*.yaml"))
    assert [Path(p).name for p in manifests] == ["ingest-example.monitoring.yaml", "ingest-example.yaml",
                                                 "ingest-refunds.monitoring.yaml", "ingest-refunds.yaml"]
    checked = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES, *manifests],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # ConfigMap, Deployment, PDB, Service, dashboard ConfigMap per topic; the CRD kinds are only warned about
    assert checked.stdout.count("passed") == 10
    config = by_kind((out / "ingest-refunds.yaml").read_text())["ConfigMap"]["data"]["topic.yaml"]
    assert "topic: refunds" in config and "group_id: ingest-refunds" in config
    elapsed = time.monotonic() - began
    assert elapsed < 60, f"took {elapsed:.1f} s"
