from integration.conftest import kafka, topic_name  # noqa: F401 - the same real broker fixtures
