"""What a step does when it fails: retry after a backoff, or stop the consumer (`FatalError`)."""

from __future__ import annotations

import random
from dataclasses import dataclass


class FatalError(Exception):
    """Retrying cannot help (e.g. a permanent storage error); the consumer must stop."""


@dataclass
class Backoff:
    first: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        # Full jitter keeps a fleet of consumers from retrying a recovering store in lockstep.
        return random.uniform(0.5, 1.0) * min(self.cap, self.first * 2 ** max(0, attempt - 1))
