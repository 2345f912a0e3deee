"""lake-ingest: land one Kafka topic in a data lake, exactly once."""

__version__ = "0.2.0"
