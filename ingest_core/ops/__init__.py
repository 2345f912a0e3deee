"""What a running consumer shows its operators: the observer hooks the flow calls (observer.py),
Prometheus metrics (metrics.py), health endpoints (health.py), logs (log.py), the terminal status
line (status.py), and fault injection for chaos tests (faults.py)."""
