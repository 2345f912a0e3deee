"""The `ingest` command line on top of everything else: cli.py parses it and runs `run` (run.py),
`validate` (with sizing.py), `new`, `render` (with render_monitoring.py), `autoloader` and `audit`
(with audit_chain.py, audit_rows.py, audit_topic.py). Nothing below this package imports it."""
