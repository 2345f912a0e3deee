from collections.abc import Callable
from typing import Any

from typing_extensions import Buffer

def by_partition(messages: list[Any]) -> tuple[dict[int, list[Any]], list[tuple[Any, int]]]: ...
def columns(
    messages: list[Any], with_headers: bool, start: int, reserve: Callable[[int], Buffer]
) -> tuple[bytes, bytes, list[bytes | None], list[Any] | None, bytes, list[int], int, int]: ...
def use_methods_of(message_type: type | None) -> bool: ...
