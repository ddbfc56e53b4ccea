"""Run a Python program with every socket it binds kept on loopback: ``python -m KM3DIRAC.sandbox.loopback
<script or console-script path> [arguments]``, or :func:`loopback_command` to build that command line.

DIRAC's DISET services bind ``("", port)`` on a dual-stack socket (every interface) and have no bind-address option
(``ServiceReactor.__createListeners``, ``M2SSLTransport.initAsServer``); tornado-based servers such as the web
portal bind ``0.0.0.0`` and ``::``. In a process started this way, a bind to a wildcard address is turned into the
matching loopback address before it reaches the kernel: IPv4 ``""``/``0.0.0.0`` -> ``127.0.0.1``; IPv6 ``""``/``::``
-> ``::ffff:127.0.0.1`` on a dual-stack socket (IPv4 clients of ``localhost`` still reach it) or ``::1`` on an
IPv6-only one. Any other address is left alone. Child processes made by ``fork`` inherit it; programs started anew
need the launcher themselves.
"""

from __future__ import annotations

import runpy
import socket
import sys
from collections.abc import Sequence

IPV4_WILDCARDS = ("", "0.0.0.0")
IPV6_WILDCARDS = ("", "::", "::0", "0:0:0:0:0:0:0:0")
_original_bind = socket.socket.bind


def _loopback_address(sock: socket.socket, address):
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return address
    host, rest = address[0], address[1:]
    if sock.family == socket.AF_INET and host in IPV4_WILDCARDS:
        return ("127.0.0.1", *rest)
    if sock.family == socket.AF_INET6 and host in IPV6_WILDCARDS:
        try:
            v6_only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        except OSError:
            v6_only = 0
        return ("::1" if v6_only else "::ffff:127.0.0.1", *rest)
    return address


def _bind_on_loopback(self: socket.socket, address) -> None:
    _original_bind(self, _loopback_address(self, address))


def restrict_binds_to_loopback() -> None:
    """From now on, wildcard binds of this process (and of its forked children) go to loopback."""
    socket.socket.bind = _bind_on_loopback


def loopback_command(command: Sequence[str]) -> list[str]:
    """``command`` (a Python script or console script and its arguments) run through this launcher."""
    return [sys.executable, "-m", "KM3DIRAC.sandbox.loopback", *command]


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m KM3DIRAC.sandbox.loopback <python script> [arguments]")
    restrict_binds_to_loopback()
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
