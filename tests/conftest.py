"""Shared fixtures. Real servers (Kafka, object stores) live in tests/integration/conftest.py."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy" / "local"))
