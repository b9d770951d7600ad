"""Hand a socket (e.g. a peeled-off association) to another process over a Unix socket.

The concurrent-server pattern: the parent keeps its one-to-many socket, peels
an association off and passes the descriptor (SCM_RIGHTS) to a worker.
"""

from __future__ import annotations

import socket


def send_socket(channel: socket.socket, sock: socket.socket, tag: bytes = b"sctp") -> None:
    """Pass sock's descriptor with a short tag; the caller may close its copy afterwards."""
    socket.send_fds(channel, [tag], [sock.fileno()])


def recv_socket(channel: socket.socket) -> tuple[socket.socket, bytes]:
    """Receive one passed socket and its tag."""
    tag, fds, _, _ = socket.recv_fds(channel, 1024, 1)
    if not fds:
        raise ConnectionError("peer closed the channel without passing a socket")
    return socket.socket(fileno=fds[0]), tag
