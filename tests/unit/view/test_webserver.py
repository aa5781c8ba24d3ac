"""LoopbackWebViewer: rerun's page passed on under its policy, to loopback names only."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fusion_pipeline.view.webserver import LoopbackWebViewer


class _Page(BaseHTTPRequestHandler):
    """rerun's web server, as far as the proxy sees it: one page."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<html>viewer</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def viewer() -> Iterator[LoopbackWebViewer]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    proxy = LoopbackWebViewer(0, int(upstream.server_address[1]), grpc_port=9876)
    try:
        yield proxy
    finally:
        proxy.close()
        upstream.shutdown()
        upstream.server_close()
        thread.join()


def _get(port: int, host: str | None) -> tuple[int, bytes, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", "/", skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        reply = connection.getresponse()
        return reply.status, reply.read(), reply.getheader("Content-Security-Policy")
    finally:
        connection.close()


def test_the_page_is_served_to_loopback_names_under_the_policy(viewer: LoopbackWebViewer) -> None:
    for host in (f"127.0.0.1:{viewer.port}", f"localhost:{viewer.port}", f"LOCALHOST:{viewer.port}"):
        status, body, policy = _get(viewer.port, host)
        assert (status, body) == (200, b"<html>viewer</html>"), host
        assert policy is not None and "connect-src 'self' http://127.0.0.1:9876" in policy


@pytest.mark.parametrize(
    "host", ["attacker.example:{port}", "attacker.example", "127.0.0.1:1", "127.0.0.1", "", None]
)
def test_another_host_name_is_refused(viewer: LoopbackWebViewer, host: str | None) -> None:
    """DNS rebinding: a page of attacker.example, its name rebound to 127.0.0.1, reaches this port with
    its own Host; it must not be served the viewer (nor, through it, the recording's gRPC url)."""
    status, body, _ = _get(viewer.port, None if host is None else host.format(port=viewer.port))
    assert status == 403 and b"viewer</html>" not in body
