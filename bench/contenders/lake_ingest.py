"""lake-ingest as users run it to land a backlog: `ingest run CONFIG --exit-at-end --log-format json`,
through ingest_core.commands.cli.main in this process (the same code `python -m ingest_core` runs).
It stops by itself once every partition is read to its end and committed; the harness takes its end
from the last `flush` log line (see bench/run.py, lake_ingest_timing)."""
import json
import sys

from bench_result import RESULT_PREFIX


def main(spec: dict) -> int:
    from ingest_core.commands import cli

    code = cli.main(["run", spec["config"], "--exit-at-end", "--log-format", "json"])
    import ingest_core

    print(RESULT_PREFIX + json.dumps({"exit_code": code, "ingest_core_file": ingest_core.__file__}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
