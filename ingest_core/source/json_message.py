"""JSON one message at a time: the path that isolates a bad message from its batch and gives
the reason it is dead-lettered (invalid UTF-8 or JSON, a duplicate key, not an object, nested
too deep). The batch path (decode.py) comes here only when a whole-batch parse fails or could
have lost something."""

from __future__ import annotations

import json
import re

from ingest_core.arrow.schema import INT64_MAX, INT64_MIN, NumberText, exceeds_depth

_BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_FIRST_CHAR = re.compile(rb"[ \t\r\n]*([^ \t\r\n])")


def normalise(index: int, value: bytes | None, rejects: dict[int, str], max_depth: int) -> bytes | None:
    """The line to parse for a message that is not simply one line "{...}", or None (with
    the reason in `rejects`) when it cannot be an object. The line returned has no JSON
    whitespace around it, so it starts with "{" and, if it parses, ends with "}"."""
    if value is None:
        return b"{}"  # a tombstone landed as a row: every payload field null
    if value.startswith(_BOM):
        value = value[3:]
    if b"\n" in value or b"\r" in value:
        # Outside strings a newline is whitespace and inside strings JSON forbids it raw,
        # so replacing it keeps valid JSON valid and one value per line.
        value = value.replace(b"\r", b" ").replace(b"\n", b" ")
    value = value.strip(b" \t")
    start = _FIRST_CHAR.match(value)
    if start is None:
        rejects[index] = "empty value: expected a JSON object"
        return None
    if start.group(1) != b"{":
        # Not an object. Never let pyarrow.json see these: a top-level `null` line
        # becomes a row of nulls, and a batch starting with one crashes the process.
        parsed = parse_json_object(value, max_depth)
        rejects[index] = parsed if isinstance(parsed, str) else "expected a JSON object"
        return None
    return value


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def _int(text: str):
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else NumberText(text)


def _float(text: str):
    value = float(text)
    return NumberText(text) if value in (float("inf"), float("-inf")) else value


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def parse_json_object(line: bytes, max_depth: int = 64) -> dict | str:
    """The parsed object, or the reason the message cannot be landed."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"invalid UTF-8: {error}"
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_int, parse_float=_float)
    except _DuplicateKey as error:
        return f"duplicate key {str(error)[:100]!r} in a JSON object: ambiguous, so not landed"
    except RecursionError:
        return "invalid JSON: nested too deeply to parse"
    except ValueError as error:
        return f"invalid JSON: {str(error)[:300]}"
    if not isinstance(value, dict):
        return f"expected a JSON object, got a JSON {_json_kind(value)}"
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return "invalid JSON: a \\u escape is an unpaired UTF-16 surrogate (not a character)"
    if exceeds_depth(value, max_depth):
        return f"nesting deeper than decode.max_depth ({max_depth}) objects/arrays"
    return value


def parse_each(
    kept: list[int], lines: list[bytes], rejects: dict[int, str], max_depth: int
) -> tuple[list[int], list[bytes], list[dict]]:
    """Each line parsed alone: the indices, lines and rows of those that are objects; the
    reasons for the others go into `rejects`."""
    good_indices: list[int] = []
    good_lines: list[bytes] = []
    rows: list[dict] = []
    for index, line in zip(kept, lines, strict=False):
        parsed = parse_json_object(line, max_depth)
        if isinstance(parsed, str):
            rejects[index] = parsed
        else:
            good_indices.append(index)
            good_lines.append(line)
            rows.append(parsed)
    return good_indices, good_lines, rows
