"""Arrow helpers shared by the source and the sink: binary arrays as bytes (binary.py) and the
column types of decoded rows (schema.py)."""
