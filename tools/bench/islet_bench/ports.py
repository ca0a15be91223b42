"""A free port for a server that cannot pick its own (nginx): one nothing listens on,
outside the ephemeral range, so that no client connection takes it meanwhile."""

import random
import socket
from typing import Iterable, Optional

FIRST, LAST = 20000, 31999  # below Linux's default ephemeral range (32768-60999)
TRIES = 100


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind HOST:PORT now. SO_REUSEADDR as servers set it: a
    port held only by connections in TIME_WAIT is free, one with a listener (on HOST or
    on the wildcard address) is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(candidates: Optional[Iterable[int]] = None) -> Optional[int]:
    """The first free port among `candidates` (default: TRIES random ones in FIRST-LAST);
    None if none is free."""
    if candidates is None:
        candidates = (random.randint(FIRST, LAST) for _ in range(TRIES))
    for port in candidates:
        if port_is_free(port):
            return port
    return None
