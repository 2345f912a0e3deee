"""No secret value is ever written out by `ingest render`: a secret-looking key whose value is a
literal becomes a `${INGEST_<KEY_PATH>}` reference, which the pod's environment fills from the
topic's Secret."""

from __future__ import annotations

import re
from typing import Any

from ingest_core.settings import is_secret_key

# librdkafka keys that `is_secret_key` matches (through "sas" or "key") but that hold no secret:
# moving them to the Secret would only hide ordinary settings from the ConfigMap.
NOT_SECRET = {"kafka.sasl.mechanism", "kafka.sasl.mechanisms", "kafka.sasl.kerberos.service.name"}
WHOLE_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}$")


def externalize_secrets(raw: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The config with every secret value replaced by a ${VAR} reference, and the VARs.

    In the pod each VAR is read from the Secret key of the same name. A value that already
    is a single `${VAR}` (or `${VAR:-default}`) keeps VAR and loses its default (a secret's
    default is a secret too); anything else moves whole to `INGEST_<KEY_PATH>`, so the
    Secret holds exactly the string the YAML had."""
    variables: set[str] = set()

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path) for v in value]
        # librdkafka keys are dotted themselves ("sasl.password"): judge them whole.
        key = path.removeprefix("kafka.") if path.startswith("kafka.") else path.rsplit(".", 1)[-1]
        if value in (None, "") or path in NOT_SECRET or not is_secret_key(key):
            return value
        variable = secret_variable(path, value)
        variables.add(variable)
        return f"${{{variable}}}"

    return walk(raw, ""), variables


def secret_variable(path: str, value: Any) -> str:
    """The environment variable (and Secret key) that carries the secret at `path` in the pod."""
    whole = WHOLE_REFERENCE.match(value) if isinstance(value, str) else None
    return whole.group(1) if whole else "INGEST_" + re.sub(r"[^A-Z0-9]+", "_", path.upper()).strip("_")
