"""Human-friendly sizes ("64MiB") and durations ("60s") as used in consumer YAML."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

SIZE_HINT = "write a whole number of bytes or a number with a unit, e.g. 64MiB, 1GB, 512KiB"
DURATION_HINT = "write a number with a unit, e.g. 500ms, 60s, 5m, 1h"


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string such as '64MiB' or '1GB'. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; {SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; {SIZE_HINT}")
        return value
    match = _NUMBER_UNIT.match(str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; {SIZE_HINT}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: int | float | str) -> float:
    """Seconds from a number (seconds) or a string such as '500ms', '60s', '5m'."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value} is negative; {DURATION_HINT}")
        return float(value)
    match = _NUMBER_UNIT.match(str(value))
    unit = (match.group(2).lower() or "s") if match else None
    if not match or unit not in _DURATION_UNITS:
        raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")
    return float(match.group(1)) * _DURATION_UNITS[unit]


_KUBERNETES_SUFFIXES = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_KUBERNETES_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)([a-zA-Z]*)\s*$")


def parse_kubernetes_memory(value: int | str) -> int:
    """Bytes from a Kubernetes memory quantity ('1Gi', '512Mi', '1G', '800M', '1073741824').
    Units are case-sensitive as in Kubernetes: 'M' is 10^6, 'Mi' is 2^20. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a memory quantity; write e.g. 1Gi or 512Mi")
    if isinstance(value, int):
        return value
    match = _KUBERNETES_QUANTITY.match(str(value))
    if not match or match.group(2) not in _KUBERNETES_SUFFIXES:
        raise ValueError(f"{value!r} is not a Kubernetes memory quantity; write e.g. 1Gi, 512Mi or 1G")
    return int(float(match.group(1)) * _KUBERNETES_SUFFIXES[match.group(2)])
