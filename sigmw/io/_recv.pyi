# Types of the C module built from _recv.c (see that file).

def recv_batch(
    fd: int, max_messages: int, slot_size: int
) -> list[tuple[bytes, int, bytes | None, bytes]]: ...
