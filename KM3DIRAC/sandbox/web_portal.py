"""DIRAC's web portal (WebAppDIRAC) in the local sandbox, and the launcher that starts it.

What listens where:

- WebAppDIRAC runs in "balancer" mode (``/WebApp/Balancer = nginx``): it believes the identity headers
  (``X-Ssl_client_verify``, ``X-SSL-CERT``) of whoever reaches it. In the sandbox it therefore listens on no TCP
  port at all but on a Unix socket (mode 0600) in the sandbox directory: only the sandbox's owner can reach it.
- The sandbox's front (:mod:`KM3DIRAC.sandbox.portal_front`) listens on ``127.0.0.1`` only. It lets a browser in
  after one visit of the login URL (a random token, kept in a 0600 file, printed by ``dirac-km3-sandbox status``),
  drops every identity header and cookie the browser sends, and sets the headers for the sandbox user itself.

The launcher (``python -m KM3DIRAC.sandbox.web_portal <socket>``) works around three things of WebAppDIRAC 6.0.8
on PyPI's tornado, each explained where it is done; the static files' root is set with ``DIRAC_ROOT_PATH`` by the
sandbox (:func:`portal_environment`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from KM3DIRAC import VO

#: the group of the sandbox user as production manager (the sandbox user belongs to it too)
PRODUCTION_MANAGER_GROUP = f"{VO}_prod"
ROOT_URL = "/DIRAC"



def portal_cfg_text(user_name: str) -> str:
    """The ``/WebApp`` section of the sandbox and its production manager group, with ``user_name`` in it (the
    group's properties are the sandbox's: ``KM3DIRAC.sandbox.dirac_components.PRODUCTION_GROUP_PROPERTIES``)."""
    return f"""WebApp
{{
  # identity comes in headers set by the sandbox's front (KM3DIRAC.sandbox.portal_front), which alone can reach
  # the portal's Unix socket; no HTTPS listener is opened in this mode
  Balancer = nginx
  NumProcesses = 1
  DevelopMode = False
}}
Registry
{{
  Groups
  {{
    {PRODUCTION_MANAGER_GROUP}
    {{
      Users = {user_name}
      VO = {VO}
    }}
  }}
}}
"""


def portal_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` for the portal process. WebAppDIRAC serves its static files only below ``DIRAC.rootPath``, which
    DIRAC computes from ``sys.base_prefix``: in a virtual environment that is ``/usr``, not where the packages are,
    and every file answers 403. ``DIRAC_ROOT_PATH`` is DIRAC's own way to set it."""
    return {**env, "DIRAC_ROOT_PATH": sys.prefix}


def _let_tornado_ignore_the_m2crypto_stream() -> None:
    """``dirac_webapp_run`` calls ``SSLIOStream.configure(M2IOStream)`` at import: only DIRACGrid's tornado fork
    (not on PyPI, and its tornado 5 does not run on Python 3.11) has it. The M2Crypto stream is used only by the
    HTTPS listener, which balancer mode never opens, so the call is made a no-op."""
    import tornado.iostream

    if not hasattr(tornado.iostream.SSLIOStream, "configure"):
        tornado.iostream.SSLIOStream.configure = classmethod(lambda cls, *args, **kwargs: None)


def serve_on_unix_socket_only(socket_path: Path) -> None:
    """WebAppDIRAC's ``App.bootstrap`` calls ``HTTPServer.listen(port)``, which binds every interface and has no
    option against it: every ``listen`` of this process binds the Unix socket ``socket_path`` (0600) instead."""
    import tornado.netutil
    import tornado.tcpserver

    def listen(server: tornado.tcpserver.TCPServer, port: int, address: str | None = None, **kwargs) -> None:
        server.add_socket(tornado.netutil.bind_unix_socket(str(socket_path), mode=0o600))

    tornado.tcpserver.TCPServer.listen = listen


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        raise SystemExit("usage: python -m KM3DIRAC.sandbox.web_portal <unix socket path>")
    socket_path = Path(arguments[0])
    socket_path.unlink(missing_ok=True)
    _let_tornado_ignore_the_m2crypto_stream()
    serve_on_unix_socket_only(socket_path)
    from WebAppDIRAC.scripts.dirac_webapp_run import main as webapp_main

    # -p: production mode (the shipped JavaScript builds, no compilation); the portal calls DIRAC's services with
    # the host certificate on behalf of the user (the sandbox's dirac.cfg says no for the user's own commands)
    sys.argv = ["dirac-webapp-run", "-p", "-o", "/DIRAC/Security/UseServerCertificate=yes"]
    os.umask(0o077)
    webapp_main()


if __name__ == "__main__":
    main()
