"""The sandbox's front of DIRAC's web portal: what nginx is for a production portal, on 127.0.0.1 only.

``python -m KM3DIRAC.sandbox.portal_front <port> <portal socket> <token file> <user certificate>``

- A browser is let in once it has opened ``/login?token=<token>`` (the token is the content of the 0600 token
  file): the answer sets an HttpOnly cookie and sends it to the portal's start page. Without the cookie every
  request gets 403 and a line saying where the login URL is printed.
- Every header the browser sends whose name starts with ``X-`` (``X-SSL-CERT``, ``X-Ssl_client_verify``,
  ``X-Scheme``, ``X-Forwarded-For`` ...) and the portal's own session cookies (``authGrant``, ``session_id``) are
  dropped; the front sets the identity headers of balancer mode for the sandbox user (the PEM of the user
  certificate). Nobody can be anyone else through this port, and the portal itself has no TCP port.

Plain ``http.server``: one thread per connection, bodies read whole (the portal's largest answers are the ExtJS
files of a few MB).
"""

from __future__ import annotations

import http.client
import http.cookies
import http.server
import json
import secrets
import socket
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from KM3DIRAC.sandbox.processes import LOOPBACK

LOGIN_PATH = "/login"
TOKEN_COOKIE = "km3dirac_sandbox_portal"
#: cookies of the portal's own login (OAuth sessions): the front decides who the user is, never the browser
PORTAL_SESSION_COOKIES = ("authGrant", "session_id")
HOP_BY_HOP_HEADERS = ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                      "transfer-encoding", "upgrade", "content-length", "host")
START_PAGE = "/DIRAC/"
BACKEND_TIMEOUT = 300


def new_token() -> str:
    return secrets.token_urlsafe(24)


def write_token(token_file: Path) -> str:
    """A new token in ``token_file``, readable by its owner only."""
    token = new_token()
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(token)
    return token


def login_url(port: int, token: str) -> str:
    return f"http://{LOOPBACK}:{port}{LOGIN_PATH}?token={token}"


def identity_headers(user_certificate_pem: str) -> dict[str, str]:
    """What nginx in front of a production portal sets after verifying the browser's client certificate."""
    return {"X-Scheme": "https", "X-Ssl_client_verify": "SUCCESS",
            "X-SSL-CERT": urllib.parse.quote(user_certificate_pem), "X-Real-Ip": LOOPBACK}


def logged_in_as(port: int, token: str, headers: dict[str, str] | None = None) -> dict:
    """The portal's ``getConfigData`` answer through the front with the login cookie (``user``: who the portal
    takes the browser for), sending ``headers`` besides; raises OSError when the front or the portal is down."""
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{START_PAGE}getConfigData",
                                     headers={"Cookie": f"{TOKEN_COOKIE}={token}", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def portal_health(port: int, token: str) -> str:
    """"ok (logged in as <user>/<group>)" or what is wrong, for ``dirac-km3-sandbox status``."""
    try:
        user = logged_in_as(port, token).get("user", {})
    except (OSError, ValueError) as error:
        return f"NOT ANSWERING ({error})"
    if not user.get("username") or user.get("username") == "anonymous":
        return f"NOT LOGGED IN ({user})"
    return f"ok (logged in as {user['username']}/{user.get('group')})"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path) -> None:
        super().__init__("localhost", timeout=BACKEND_TIMEOUT)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(BACKEND_TIMEOUT)
        self.sock.connect(str(self.socket_path))


def forwarded_cookie_header(cookie_header: str | None) -> str | None:
    """The browser's cookies without the front's token and the portal's session cookies."""
    if not cookie_header:
        return None
    cookies = http.cookies.SimpleCookie()
    try:
        cookies.load(cookie_header)
    except http.cookies.CookieError:
        return None
    kept = [f"{name}={morsel.coded_value}" for name, morsel in cookies.items()
            if name != TOKEN_COOKIE and name not in PORTAL_SESSION_COOKIES]
    return "; ".join(kept) or None


def make_handler(socket_path: Path, token: str, user_certificate_pem: str) -> type[http.server.BaseHTTPRequestHandler]:
    identity = identity_headers(user_certificate_pem)

    class FrontHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "KM3DIRAC-sandbox-portal-front"

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

        def _handle(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == LOGIN_PATH:
                self._login(urllib.parse.parse_qs(url.query).get("token", [""])[0])
            elif not self._has_token_cookie():
                self._answer(403, "Not logged in: open the login URL that `dirac-km3-sandbox status` prints.\n")
            else:
                self._forward()

        def _has_token_cookie(self) -> bool:
            cookies = http.cookies.SimpleCookie()
            try:
                cookies.load(self.headers.get("Cookie", ""))
            except http.cookies.CookieError:
                return False
            sent = cookies.get(TOKEN_COOKIE)
            return sent is not None and secrets.compare_digest(sent.value, token)

        def _login(self, sent_token: str) -> None:
            if not secrets.compare_digest(sent_token, token):
                self._answer(403, "Wrong login token: open the login URL that `dirac-km3-sandbox status` prints.\n")
                return
            self.send_response(302)
            self.send_header("Set-Cookie", f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
            self.send_header("Location", START_PAGE)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {name: value for name, value in self.headers.items()
                       if not name.lower().startswith("x-") and name.lower() not in HOP_BY_HOP_HEADERS
                       and name.lower() != "cookie"}
            cookie = forwarded_cookie_header(self.headers.get("Cookie"))
            if cookie:
                headers["Cookie"] = cookie
            headers.update(identity)
            headers["Host"] = self.headers.get("Host", f"{LOOPBACK}")
            connection = _UnixHTTPConnection(socket_path)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                content = response.read()
            except OSError as error:
                self._answer(502, f"the portal does not answer on {socket_path}: {error}\n")
                return
            finally:
                connection.close()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        def log_message(self, format: str, *args) -> None:
            sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

    return FrontHandler


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 4:
        raise SystemExit("usage: python -m KM3DIRAC.sandbox.portal_front <port> <portal socket> <token file> "
                         "<user certificate>")
    port, socket_path, token_file, user_certificate = arguments
    token = Path(token_file).read_text().strip()
    handler = make_handler(Path(socket_path), token, Path(user_certificate).read_text())
    server = FrontServer((LOOPBACK, int(port)), handler)
    server.serve_forever()


class FrontServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # a browser opens many connections at once while the portal loads


if __name__ == "__main__":
    main()
