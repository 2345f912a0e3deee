"""Every manifest `ingest render` writes is accepted by a real Kubernetes API server, and a broken
one is refused.

The server (kube-apiserver + etcd, deploy/local/kube_apiserver.py) holds the real
CustomResourceDefinitions of KEDA and of the Prometheus operator, so ScaledObject,
TriggerAuthentication, ServiceMonitor and PrometheusRule are judged by their publishers' schemas.
`kubectl apply --dry-run=server` runs the whole write path (decoding with strict field
validation, defaulting, validation, admission) and stores nothing. What the CRDs hold as plain
strings, the PromQL and the alert templates, is loaded by Prometheus' own rule loader and parser
(`promql-check`, built by the same script).
"""
from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# deploy/local is on sys.path (tests/conftest.py)
from kube_apiserver import KEDA_VERSION, PROMETHEUS_OPERATOR_VERSION, LocalKubeApiserver, crd_files, promql_check

from ingest_core.commands.render_monitoring import queries

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KEDA_FLEET = {
    # KEDA with SASL: ScaledObject and TriggerAuthentication, in a namespace of its own.
    "payments.v2.yaml": """\
extends: defaults.yaml
topic: payments.v2
kafka:
  bootstrap.servers: ${KAFKA_BOOTSTRAP_SERVERS}
  security.protocol: SASL_SSL
  sasl.mechanisms: SCRAM-SHA-512
  sasl.username: ${KAFKA_USER}
  sasl.password: ${KAFKA_PASSWORD}
output: {url: "s3://bucket/lake/payments", storage_options: {key: "${AWS_ACCESS_KEY_ID}"}}
batch: {max_age: 5m}
deploy:
  namespace: lake
  service_account: lake-writer
  keda: {enabled: true, partitions: 6, min_replicas: 0, max_replicas: 4, lag_threshold: 5000}
""",
    # KEDA without auth, literal bootstrap servers, default namespace.
    "clicks.yaml": """\
topic: clicks
kafka: {bootstrap.servers: "kafka-0.kafka:9092,kafka-1.kafka:9092"}
output: {url: "abfs://lake/clicks"}
deploy: {resources: {cpu: "1", memory: 2Gi}, keda: {enabled: true, partitions: 3}}
http: {port: 9100}
""",
}


@pytest.fixture(scope="session")
def kube(tmp_path_factory):
    with LocalKubeApiserver(tmp_path_factory.mktemp("kube")) as server:
        server.install_crds()
        created = server.kubectl("create", "namespace", "lake")
        assert created.returncode == 0, created.stderr
        yield server


def render_folder(folder: Path, out: Path) -> list[Path]:
    result = subprocess.run([sys.executable, "-m", "ingest_core", "render", str(folder), "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return sorted(out.glob("*.yaml"))


def dry_run(kube: LocalKubeApiserver, *files: Path) -> subprocess.CompletedProcess:
    args = [arg for path in files for arg in ("-f", str(path))]
    return kube.kubectl("apply", "--dry-run=server", "-o", "name", *args)


def objects(files: list[Path]) -> list[str]:
    """`kind.group/name` of every document, as `kubectl apply -o name` prints them."""
    names = []
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            group = document["apiVersion"].rpartition("/")[0]
            kind = document["kind"].lower() + (f".{group}" if group else "")
            names.append(f"{kind}/{document['metadata']['name']}")
    return names


def assert_accepted(kube: LocalKubeApiserver, files: list[Path]) -> None:
    result = dry_run(kube, *files)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(objects(files))


def test_the_crds_are_the_publishers(kube):
    names = {path.parent.name: path.name for path in crd_files()}
    assert set(names) == {"keda", "prometheus-operator"}
    listed = kube.kubectl("get", "crd", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    for crd in ("scaledobjects.keda.sh", "triggerauthentications.keda.sh", "servicemonitors.monitoring.coreos.com",
                "prometheusrules.monitoring.coreos.com"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in listed.stdout
    assert KEDA_VERSION and PROMETHEUS_OPERATOR_VERSION


def test_every_manifest_rendered_for_the_repos_consumers_is_accepted(kube, tmp_path):
    files = render_folder(REPO / "consumers", tmp_path / "out")
    kinds = [name.split("/")[0] for name in objects(files)]
    assert {"configmap", "deployment.apps", "poddisruptionbudget.policy", "service",
            "servicemonitor.monitoring.coreos.com", "prometheusrule.monitoring.coreos.com"} <= set(kinds)
    assert_accepted(kube, files)


def test_the_committed_generated_folder_is_accepted(kube):
    assert_accepted(kube, sorted((REPO / "deploy" / "k8s" / "generated").glob("*.yaml")))


def test_every_manifest_of_a_keda_fleet_is_accepted(kube, tmp_path):
    folder = tmp_path / "consumers"
    folder.mkdir()
    shutil.copy(REPO / "consumers" / "defaults.yaml", folder)
    for name, text in KEDA_FLEET.items():
        (folder / name).write_text(text)
    files = render_folder(folder, tmp_path / "out")
    kinds = [name.split("/")[0] for name in objects(files)]
    assert kinds.count("scaledobject.keda.sh") == 2 and kinds.count("triggerauthentication.keda.sh") == 1
    assert_accepted(kube, files)


# ---- the check bites: what a real cluster refuses, it refuses here ----

def _selector_mismatch(docs: dict) -> None:
    docs["Deployment"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = "someone-else"


def _request_above_limit(docs: dict) -> None:
    resources = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    resources["requests"]["memory"] = "4Gi"
    resources["limits"]["memory"] = "1Gi"


def _unknown_field(docs: dict) -> None:
    docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}


def _keda_schema(docs: dict) -> None:
    docs["ScaledObject"]["spec"]["minReplicaCount"] = "one"


def _keda_unknown_field(docs: dict) -> None:
    docs["ScaledObject"]["spec"]["triggers"][0]["lagTreshold"] = "10"


def _service_monitor_schema(docs: dict) -> None:
    docs["ServiceMonitor"]["spec"]["endpoints"][0]["interval"] = "every 30 seconds"


def _prometheus_rule_schema(docs: dict) -> None:
    docs["PrometheusRule"]["spec"]["groups"][0]["rules"][0]["for"] = "fifteen minutes"


@pytest.mark.parametrize("break_it, refusal", [
    (_selector_mismatch, "`selector` does not match template `labels`"),
    (_request_above_limit, "must be less than or equal to memory limit"),
    (_unknown_field, 'unknown field "spec.template.spec.containers[0].readinesProbe"'),
    (_keda_schema, "spec.minReplicaCount"),
    (_keda_unknown_field, "lagTreshold"),
    (_service_monitor_schema, "spec.endpoints[0].interval"),
    (_prometheus_rule_schema, "spec.groups[0].rules[0].for"),
], ids=["selector-mismatch", "request-above-limit", "unknown-field", "keda-schema", "keda-unknown-field",
        "service-monitor-schema", "prometheus-rule-schema"])
def test_a_broken_manifest_is_refused(kube, tmp_path, break_it, refusal):
    folder = tmp_path / "consumers"
    folder.mkdir()
    (folder / "clicks.yaml").write_text(KEDA_FLEET["clicks.yaml"])
    files = render_folder(folder, tmp_path / "out")
    docs = {d["kind"]: d for path in files for d in yaml.safe_load_all(path.read_text())
            if d["kind"] != "ConfigMap"}
    unbroken = copy.deepcopy(docs)
    break_it(docs)
    broken = [name for name in docs if docs[name] != unbroken[name]]
    assert len(broken) == 1
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(docs[broken[0]]))
    result = dry_run(kube, path)
    assert result.returncode != 0 and refusal in result.stderr, result.stdout + result.stderr
    path.write_text(yaml.safe_dump(unbroken[broken[0]]))
    assert dry_run(kube, path).returncode == 0, "the same object, unbroken, is accepted"


def test_the_cli_starts_reports_and_stops_a_server(tmp_path):
    script = [sys.executable, str(REPO / "deploy" / "local" / "kube_apiserver.py")]
    data_dir = tmp_path / "kube"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*script, *args, "--dir", str(data_dir)], capture_output=True, text=True, check=False, timeout=180)

    try:
        started = run("start")
        assert started.returncode == 0, started.stderr
        kubeconfig = started.stdout.splitlines()[-1]
        assert kubeconfig == str(data_dir / "kubeconfig")
        assert run("status").returncode == 0
        assert run("start").returncode == 1, "a second start on the same dir is refused"
        default = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "namespace", "default", "-o", "name"],
                                 capture_output=True, text=True, check=False, timeout=60)
        assert default.stdout.strip() == "namespace/default", default.stderr
    finally:
        stopped = run("stop")
    assert stopped.stdout.strip() == "stopped"
    assert run("status").returncode == 3


# ---- PromQL: what the PrometheusRule CRD holds as a plain string ----

def rule_and_query_files(files: list[Path], folder: Path) -> tuple[list[Path], Path]:
    """Each PrometheusRule's groups as a Prometheus rule file, and every query of alerts and dashboards
    in one file (Grafana's $__rate_interval replaced by a duration, as Grafana does before it asks)."""
    rule_files, expressions = [], []
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        for document in docs:
            if document["kind"] == "PrometheusRule":
                rule_file = folder / f"{document['metadata']['name']}.rules.yaml"
                rule_file.write_text(yaml.safe_dump({"groups": document["spec"]["groups"]}))
                rule_files.append(rule_file)
        expressions += [q.replace("$__rate_interval", "2m") for q in queries(docs)]
    query_file = folder / "dashboard-queries.txt"
    query_file.write_text("\n".join(expressions) + "\n")
    return rule_files, query_file


def test_alert_rules_load_in_prometheus_and_dashboard_queries_parse(tmp_path):
    folder = tmp_path / "consumers"
    folder.mkdir()
    shutil.copy(REPO / "consumers" / "defaults.yaml", folder)
    shutil.copy(REPO / "consumers" / "example.yaml", folder)
    for name, text in KEDA_FLEET.items():
        (folder / name).write_text(text)
    rule_files, query_file = rule_and_query_files(render_folder(folder, tmp_path / "out"), tmp_path)
    assert len(rule_files) == 3
    rules = promql_check("rules", *rule_files)
    assert rules.returncode == 0, rules.stderr
    assert rules.stdout.count(": 5 rules ok") == 3
    parsed = promql_check("exprs", query_file)
    assert parsed.returncode == 0, parsed.stderr
    assert f"{query_file}: {(5 + 13) * 3} expressions read" in parsed.stdout  # 5 alerts, 13 panel queries a topic


@pytest.mark.parametrize("field, broken, refusal", [
    ("expr", "sum(ingest_partition_lag{topic=\"clicks\"} > 0", "could not parse expression"),
    ("for", "15 minutes", 'unknown unit " minutes" in duration'),
    ("annotations", {"summary": "lag is {{ $value }"}, "template"),
], ids=["unbalanced-paren", "bad-duration", "bad-template"])
def test_a_broken_alert_rule_is_refused(tmp_path, field, broken, refusal):
    folder = tmp_path / "consumers"
    folder.mkdir()
    (folder / "clicks.yaml").write_text(KEDA_FLEET["clicks.yaml"])
    (rule_file,), _ = rule_and_query_files(render_folder(folder, tmp_path / "out"), tmp_path)
    groups = yaml.safe_load(rule_file.read_text())
    groups["groups"][0]["rules"][0][field] = broken
    rule_file.write_text(yaml.safe_dump(groups))
    result = promql_check("rules", rule_file)
    assert result.returncode == 1 and refusal in result.stderr, result.stdout + result.stderr
