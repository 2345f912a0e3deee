"""Where records come from: the Kafka client's configuration and broker errors (kafka.py), and the
decoders that turn message values into Arrow rows (decode.py for JSON and raw; avro.py, json_schema.py
and protobuf.py for the Confluent wire formats, with registry.py the schema registry client)."""
