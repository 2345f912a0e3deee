"""What decoding a batch gives (`Decoded`), the errors a decoder raises, and the `raw` format."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa


class NotSliceable(Exception):
    """A batch's slices do not all fit its first slice's schema, or one needs a look of its
    own (`Decoder.decode_in_slices`): decode the batch whole instead."""


class DecodeUnavailable(Exception):
    """Decoding cannot proceed now for a reason outside the messages (the schema registry is
    down, times out, or answers 401/403/5xx). Retry the batch later, like a storage outage;
    never dead-letter its messages. `permanent` is True when retrying cannot help and the
    consumer should stop (no decoder raises that: refused credentials are retried,
    since they can be fixed while the consumer waits)."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Decoded:
    """The rows that decoded (`table`, one row per index in `kept`) and the rejects."""

    table: pa.Table
    kept: list[int]  # indexes in the batch, ascending (so all of them is the batch in its order)
    rejects: dict[int, str] = field(default_factory=dict)  # index in batch -> reason
    widened: int = 0  # values written as text although they were not strings, to keep them
    lines: pa.Array | None = None  # JSON input: the validated text of each kept row (binary)
    skipped: int = 0  # tombstones skipped under `decode.tombstones: skip`


def as_binary_array(values: pa.Array | list[bytes | None]) -> pa.Array:
    """Message values as an Arrow binary array (a batch's already is; tests and tools pass lists)."""
    return values if isinstance(values, pa.Array) else pa.array(values, pa.binary())


def decode_raw(values: pa.Array | list[bytes | None]) -> Decoded:
    values = as_binary_array(values)
    if pa.types.is_large_binary(values.type):
        values = values.cast(pa.binary())  # over 2 GiB: raises, as building the array did before
    return Decoded(pa.table({"value": values}), list(range(len(values))))
