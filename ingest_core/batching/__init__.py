"""Messages held per partition until a batch is due (buffer.py: the buffer, the cut batch and the
flush policy), within one memory budget per process (budget.py)."""
