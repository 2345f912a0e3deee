#!/usr/bin/env bash
# The test command (README, .ci/run): install everything the tests need on a fresh machine, then run them.
#   bash deploy/local/test.sh                  # everything, as CI runs it
#   bash deploy/local/test.sh -m "not slow"    # the fast lane: no real servers
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install --quiet --disable-pip-version-check -c deploy/constraints.txt -e ".[test,s3,azure,gcs]"
python3 deploy/local/kafka_broker.py fetch          # Apache Kafka jars from Maven Central, cached in ~/.cache
python3 deploy/local/kube_apiserver.py fetch         # kube-apiserver + etcd built with Go, KEDA and Prometheus-operator CRDs, cached in ~/.cache
python3 deploy/local/schema_registry.py fetch       # a Confluent-REST schema registry built with Go, cached in ~/.cache
python3 deploy/local/spark_jars.py fetch           # hadoop-aws (s3a) and hadoop-azure (abfs) for Spark, matching pyspark's Hadoop
python3 -c 'import sys; sys.path.insert(0, "deploy/local"); import object_stores; object_stores.ensure_azurite()'  # Azurite from npm
python3 -c 'import sys; sys.path.insert(0, "deploy/local"); import object_stores; object_stores.ensure_fake_gcs_server()'  # fake-gcs-server, built with Go
python3 -m ruff check ingest_core tests             # lint ([tool.ruff] in pyproject.toml)
python3 -m ruff format --check ingest_core           # formatting
python3 -m mypy ingest_core                          # types ([tool.mypy])
python3 -m pytest -p no:cacheprovider "$@"
