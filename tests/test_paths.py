"""paths.py: partition folders from record fields can never leave or hide the partition folder."""
from __future__ import annotations

import posixpath
import urllib.parse

import pyarrow as pa
import pytest

from ingest_core.sink.paths import HIVE_DEFAULT_PARTITION, PartitionTemplate, data_file_name, escape_partition_value

BASE_TS = 1_700_000_000_000  # 2023-11-14T22:13:20Z

HOSTILE = [
    "..", ".", "../../etc/passwd", "/abs", "a/../../b", "..\\..\\win", "_hidden", ".hidden", "a\x00b", "line\nbreak",
    "tab\there", "\x7f", "%2e%2e", "a=b", "C:\\x", "x" * 1000, "é" * 300, "\u202e\u200b", "\ud800", " ", "~", "a..b",
    "*?<>|\"'`", "{}[]^#",
]


def spark_unescape(text: str) -> str:
    """What Spark's ExternalCatalogUtils.unescapePathName does: each %XX is one char."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "%" and i + 2 < len(text) + 0 and all(c in "0123456789ABCDEFabcdef" for c in text[i + 1:i + 3]):
            out.append(chr(int(text[i + 1:i + 3], 16)))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:12]))
def test_hostile_values_stay_one_visible_folder(value):
    escaped = escape_partition_value(value)
    assert "/" not in escaped and "\\" not in escaped
    assert escaped not in (".", "..") and not escaped.startswith((".", "_")) or escaped == HIVE_DEFAULT_PARTITION
    assert all(0x20 <= ord(c) != 0x7f for c in escaped)
    assert len(escaped.encode("utf-8")) <= 255
    assert posixpath.normpath(f"root/k={escaped}/f") == f"root/k={escaped}/f"


@pytest.mark.parametrize("value", ["..", ".hidden", "a/b", "a=b:c", "100%", "tab\there", "_x", "plain-1,2+@ (ok)"])
def test_ascii_values_come_back_exactly_when_spark_unescapes_them(value):
    assert spark_unescape(escape_partition_value(value)) == value


def test_empty_and_null_go_to_the_default_partition_and_scalars_are_formatted():
    assert escape_partition_value("") == escape_partition_value(None) == HIVE_DEFAULT_PARTITION
    assert escape_partition_value(True) == "true" and escape_partition_value(12) == "12"
    assert escape_partition_value({"a": 1}) == "%7B%22a%22%3A1%7D"
    assert urllib.parse.unquote(escape_partition_value("Zürich")) == "Zürich"


def test_long_values_are_cut_with_a_hash_so_distinct_values_stay_distinct():
    one, two = escape_partition_value("x" * 300 + "1"), escape_partition_value("x" * 300 + "2")
    assert one != two and len(one) <= 200 and len(two) <= 200
    cut = escape_partition_value("/" * 300)
    assert "%" not in cut[-19:-16] or cut[-17] == "~"  # no escape cut in half before the hash
    assert all(part == "%2F" for part in cut.split("~")[0].split("%2F")[1:] for part in ["%2F"])


def folders(template: str, rows: dict, n: int) -> list[str]:
    return PartitionTemplate.parse(template).folders([BASE_TS] * n, pa.table(rows)).to_pylist()


def test_field_placeholders_escape_and_default_per_row():
    rows = {"country": ["DE", "../x", None, "", "fr"], "n": [1, 2, 3, 4, 5]}
    assert folders("country={country}/n={n}", rows, 5) == [
        "country=DE/n=1", "country=%2E.%2Fx/n=2", f"country={HIVE_DEFAULT_PARTITION}/n=3",
        f"country={HIVE_DEFAULT_PARTITION}/n=4", "country=fr/n=5",
    ]


def test_the_fast_and_slow_paths_give_the_same_folder_for_a_value():
    # "a..b" and "x" are plain; the batch that also holds "é" goes through the per-value path.
    fast = folders("k={k}", {"k": ["a..b", "x"]}, 2)
    slow = folders("k={k}", {"k": ["a..b", "x", "é"]}, 3)
    assert fast == slow[:2] == ["k=a..b", "k=x"]


def test_nested_fields_missing_fields_and_timestamps():
    rows = {"geo": pa.array([{"cc": "DE"}, {"cc": None}])}
    assert folders("cc={geo.cc}/dt={timestamp:%Y-%m-%d}", rows, 2) == [
        "cc=DE/dt=2023-11-14", f"cc={HIVE_DEFAULT_PARTITION}/dt=2023-11-14"]
    assert folders("x={missing.field}", rows, 2) == [f"x={HIVE_DEFAULT_PARTITION}"] * 2


@pytest.mark.parametrize("template", ["/abs/{a}", "../{a}", "a/../{b}", "{a", "x={a:fmt}", ".hidden/{a}", "_tmp/{a}"])
def test_bad_templates_are_refused_with_a_fix(template):
    with pytest.raises(ValueError):
        PartitionTemplate.parse(template)


def test_underscore_folders_with_an_equals_sign_are_allowed_spark_reads_them():
    assert PartitionTemplate.parse("_src={a}").fields == ["a"]


def test_file_names_sort_by_offset():
    names = [data_file_name("orders", 3, o, ".parquet") for o in (9, 10, 100)]
    assert names == sorted(names) and names[0] == "orders+3+00000000000000000009.parquet"
