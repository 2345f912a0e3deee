"""Loading a consumer YAML: read, follow `extends`, expand ${VAR}, validate into Settings.

Every problem becomes a ConfigError whose text names the file, the key and the fix,
so `ingest validate` and `ingest run` can print it without a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ingest_core.settings import Settings, is_secret_key
from ingest_core.sink.paths import PartitionTemplate

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MAX_EXTENDS_DEPTH = 10


class ConfigError(Exception):
    """A config problem a person must fix; str() is the whole message, one problem per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    path = Path(path)
    environ = os.environ if environ is None else environ
    raw = load_merged_yaml(path)
    problems: list[str] = []
    expanded = _expand_env(raw, environ, path, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        return Settings.model_validate(expanded)
    except ValidationError as error:
        raise ConfigError([_describe(path, e) for e in error.errors()]) from None


def load_checked_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings as `ingest run` loads them: `load_settings`, and the output.partition_by template
    parsed (a template error names the file and the key, like every other problem)."""
    settings = load_settings(path, environ)
    try:
        PartitionTemplate.parse(settings.output.partition_by)
    except ValueError as error:
        raise ConfigError([f"{path}: output.partition_by: {error}"]) from None
    return settings


def load_merged_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """The YAML of `path` deep-merged over what it `extends` (this file wins)."""
    document = _read_yaml(path)
    parent = document.pop("extends", None)
    if parent is None:
        return document
    if not isinstance(parent, str):
        raise ConfigError([f"{path}: extends: must be a file name such as defaults.yaml"])
    if depth >= _MAX_EXTENDS_DEPTH:
        raise ConfigError([f"{path}: extends: more than {_MAX_EXTENDS_DEPTH} levels; is there a loop?"])
    parent_path = (path.parent / parent).resolve()
    if not parent_path.is_file():
        raise ConfigError(
            [
                f"{path}: extends: {parent} not found (looked at {parent_path}). "
                "Fix: give a path relative to this file, e.g. extends: defaults.yaml"
            ]
        )
    return deep_merge(load_merged_yaml(parent_path, depth + 1), document)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: file not found. Fix: check the path, or create it with `ingest new TOPIC`"]
        ) from None
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(
            [
                f"{where}: YAML syntax error: {problem}. "
                "Fix: check the indentation and quotes on that line and the one before it"
            ]
        ) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            [f"{path}: the top level must be a mapping of keys (topic:, output:, ...), not a {type(document).__name__}"]
        )
    return document


def _expand_env(value: Any, environ: Mapping[str, str], path: Path, key: str, problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, environ, path, f"{key}.{k}" if key else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, environ, path, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(
            f"{path}: {key}: environment variable {name} is not set. "
            f"Fix: export {name}=..., or give a default with ${{{name}:-value}}"
        )
        return ""

    return _VAR.sub(substitute, value)


def _describe(path: Path, error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        guess = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean `{guess[0]}`?" if guess else f"known keys here: {', '.join(sorted(known))}"
        return f"{path}: {key}: unknown key; {hint}"
    if kind == "missing":
        example = _MISSING_EXAMPLES.get(key, f"{loc[-1]}: ...")
        return f"{path}: {key}: required but missing. Fix: add `{example}`"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    may_be_secret = any(part in ("kafka", "storage_options", "schema_registry") or is_secret_key(part) for part in loc)
    shown = "" if isinstance(value, (dict, list)) or may_be_secret else f" (got {value!r})"
    return f"{path}: {key}: {message}{shown}"


_MISSING_EXAMPLES = {
    "topic": "topic: orders",
    "output": "output: {url: file://./lake/orders}",
    "output.url": "url: s3://my-bucket/lake/orders",
}


def _known_keys(loc: list[str]) -> list[str]:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []
