from typing_extensions import Buffer

def lines(
    prefix: bytes,
    offsets: tuple[Buffer, int],
    stamps: tuple[Buffer, int],
    keys: tuple[Buffer | None, Buffer, Buffer, int],
    headers: list[bytes] | None,
    bodies: tuple[Buffer | None, Buffer, Buffer, int],
    count: int,
) -> bytes | None: ...
