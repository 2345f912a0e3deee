import pytest

from ingest_core.units import parse_duration, parse_size


@pytest.mark.parametrize("text,expected", [
    ("64MiB", 64 * 1024**2), ("1GB", 10**9), ("512KiB", 512 * 1024), ("100", 100), (2048, 2048), ("1.5MiB", 1572864),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [("500ms", 0.5), ("60s", 60), ("5m", 300), ("1h", 3600), (2, 2.0), ("10", 10.0)])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["64 megs", "MiB", "-1", True, "1.2.3KB"])
def test_bad_size_names_the_fix(bad):
    with pytest.raises(ValueError, match="e.g. 64MiB"):
        parse_size(bad)


def test_bad_duration_names_the_fix():
    with pytest.raises(ValueError, match="e.g. 500ms"):
        parse_duration("soon")
