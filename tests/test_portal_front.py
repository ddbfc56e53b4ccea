"""The sandbox portal's front (KM3DIRAC/sandbox/portal_front.py) on real sockets, in front of a stand-in portal on
a Unix socket that answers with the headers it received: who gets in, which headers and cookies reach the portal."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from KM3DIRAC.sandbox.portal_front import TOKEN_COOKIE, FrontServer, login_url, make_handler, write_token
from KM3DIRAC.sandbox.processes import LOOPBACK, free_port

USER_PEM = "-----BEGIN CERTIFICATE-----\nMIIB user\n-----END CERTIFICATE-----\n"


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _UnixEchoServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("unix", 0)


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[int, str]]:
    socket_path = tmp_path / "portal.sock"
    portal = _UnixEchoServer(str(socket_path), _EchoHandler)
    token = write_token(tmp_path / "etc" / "portal-token")
    port = free_port()
    server = FrontServer((LOOPBACK, port), make_handler(socket_path, token, USER_PEM))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (portal, server)]
    for thread in threads:
        thread.start()
    try:
        yield port, token
    finally:
        for s in (server, portal):
            s.shutdown()
            s.server_close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def test_token_file_is_readable_by_its_owner_only(tmp_path: Path):
    token = write_token(tmp_path / "token")
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert len(token) >= 32 and (tmp_path / "token").read_text() == token


def test_without_the_login_cookie_nothing_reaches_the_portal(front):
    port, _ = front
    status, _, body = _get(f"http://{LOOPBACK}:{port}/DIRAC/getConfigData",
                           {"X-SSL-CERT": "forged", "X-Ssl_client_verify": "SUCCESS", "X-Scheme": "https"})
    assert status == 403 and b"dirac-km3-sandbox status" in body
    status, headers, _ = _get(f"http://{LOOPBACK}:{port}/login?token=wrong")
    assert status == 403 and "Set-Cookie" not in headers


def test_the_login_url_sets_an_http_only_cookie_and_opens_the_portal(front):
    port, token = front
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(login_url(port, token), timeout=10)
        pytest.fail("the login URL did not redirect")
    except urllib.error.HTTPError as redirect:
        assert redirect.code == 302 and redirect.headers["Location"] == "/DIRAC/"
        cookie = redirect.headers["Set-Cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={token};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_identity_headers_and_session_cookies_of_the_browser_are_replaced(front):
    port, token = front
    status, _, body = _get(f"http://{LOOPBACK}:{port}/DIRAC/s:None/g:km3net_user/JobMonitor/getJobData?limit=1", {
        "Cookie": f"{TOKEN_COOKIE}={token}; authGrant=Session; session_id=forged; theme=crisp",
        "X-SSL-CERT": urllib.parse.quote("-----BEGIN CERTIFICATE-----\nsomeone else\n"),
        "X-Ssl_client_verify": "SUCCESS", "X-Scheme": "http", "X-Forwarded-For": "10.1.2.3",
        "X-Forwarded-Proto": "https", "X-Real-Ip": "10.1.2.3"})
    assert status == 200
    seen = json.loads(body)
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert seen["path"] == "/DIRAC/s:None/g:km3net_user/JobMonitor/getJobData?limit=1"
    assert urllib.parse.unquote(headers["x-ssl-cert"]) == USER_PEM
    assert (headers["x-ssl_client_verify"], headers["x-scheme"], headers["x-real-ip"]) == ("SUCCESS", "https",
                                                                                          LOOPBACK)
    assert "x-forwarded-for" not in headers and "x-forwarded-proto" not in headers
    assert headers["cookie"] == "theme=crisp"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
