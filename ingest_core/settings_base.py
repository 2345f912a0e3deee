"""What every settings model shares: frozen sections that refuse unknown keys, and the size
and duration types that accept units ("64MiB", "60s")."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ingest_core.units import parse_duration, parse_size

ByteSize = Annotated[int, BeforeValidator(parse_size)]
Seconds = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
