#!/usr/bin/env bash
# Set up and run the demo on a fresh machine: install the package, then run deploy/local/demo.py.
# The demo lands a local lake, so it needs the package and its core dependencies only: no store
# extras, no pyspark, no test tools (those are deploy/local/test.sh's). Under a minute on a warm machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install --quiet --disable-pip-version-check -c deploy/constraints.txt -e .
exec python3 deploy/local/demo.py
