"""lake-ingest as users run it: `ingest run CONFIG --exit-when-idle 2s --log-format json`,
through ingest_core.commands.cli.main in this process (the same code `python -m ingest_core` runs).

One thing is added: a wrapper around Pipeline.accept that records when the last batch of
messages was taken from Kafka. With it the harness removes exactly the idle wait that
`--exit-when-idle` spends before the shutdown flush (see bench/run.py, lake_ingest_timing).
The wrapper costs one Python call per consume() batch of up to 5,000 messages.
"""
import json
import sys
import time

from bench_result import RESULT_PREFIX


def main(spec: dict) -> int:
    from ingest_core.commands import cli

    seen = {"last_accept_at": None, "messages": 0, "wrapped": False}
    try:
        from ingest_core.flow import Pipeline

        original = Pipeline.accept

        def accept(self, messages, now):
            original(self, messages, now)
            seen["last_accept_at"] = time.time()
            seen["messages"] += len(messages)

        Pipeline.accept = accept
        seen["wrapped"] = True
    except (ImportError, AttributeError):
        pass  # the harness falls back to subtracting the nominal idle wait
    code = cli.main(["run", spec["config"], "--exit-when-idle", spec.get("idle", "2s"), "--log-format", "json"])
    import ingest_core

    print(RESULT_PREFIX + json.dumps({**seen, "exit_code": code, "ingest_core_file": ingest_core.__file__}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
