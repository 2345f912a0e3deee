#!/usr/bin/env bash
# Set up and run the demo on a fresh machine: install the package, then run deploy/local/demo.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
exec python3 deploy/local/demo.py
