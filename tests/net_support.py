"""Network helpers for tests: a free loopback port to start a server on, or to find nothing on.

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from net_support import free_port
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on: bound to port 0, then released.

    A server the test starts next can take it (another process could too, in the moment between;
    tests that need the port held keep their own socket open instead), and a client pointed at it
    meets a refused connection.
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port
