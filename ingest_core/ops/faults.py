"""Fault injection for chaos tests: crash the process at named points of a flush, or as it is told to
give partitions up (on_revoke).

Off unless INGEST_FAULTS is set, e.g. "after_marker:0.05,between_files:0.05,after_files:0.05".
Each point kills the process with SIGKILL with the given probability, so tests can prove that
a crash between marker, data files, dead letters and commit never loses or duplicates a record.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = ("after_marker", "between_files", "after_files", "before_commit", "after_commit", "on_revoke")


class FaultInjector:
    def __init__(self, spec: str = "", seed: int | None = None):
        self.chances: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            point, _, chance = item.partition(":")
            if point not in POINTS:
                raise ValueError(f"INGEST_FAULTS: unknown point {point!r}; known: {', '.join(POINTS)}")
            self.chances[point] = float(chance or 1.0)
        self.random = random.Random(seed)

    @classmethod
    def from_environment(cls) -> FaultInjector:
        return cls(os.environ.get("INGEST_FAULTS", ""))

    def point(self, name: str) -> None:
        chance = self.chances.get(name)
        if chance and self.random.random() < chance:
            os.kill(os.getpid(), signal.SIGKILL)
