# Types of the C module built from _mmsg.c (see that file).

def recv_batch(
    fd: int, max_messages: int, slot_size: int
) -> list[tuple[bytes, int, bytes | None, bytes]]: ...
def send_bursts(
    fd: int, bursts: list[list[tuple[bytes, list[tuple[int, int, bytes]]]]], more_flags: int
) -> tuple[int, list[tuple[int, int, int]] | None]: ...
