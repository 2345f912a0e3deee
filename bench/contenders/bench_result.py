"""The one line each contender prints for bench/run.py (common.RESULT_PREFIX + JSON).

Contenders run on two Pythons (the project's, and the competitors' virtualenv), so this
module uses the standard library only; the script's own folder is on sys.path for both.
"""
import json
import time

RESULT_PREFIX = "BENCH_RESULT "


def report(assigned_at: list[float], records: int, expect: int, **extra) -> int:
    """Print when partitions were first assigned and now (the end: call it right after the
    last commit returned), with `extra` fields; the exit code: 0 when all `expect` came."""
    fields = {"start_at": assigned_at[0] if assigned_at else None, "end_at": time.time(), "records": records, **extra}
    print(RESULT_PREFIX + json.dumps(fields), flush=True)
    return 0 if records == expect else 1
