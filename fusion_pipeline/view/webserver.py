"""Rerun's web viewer served on 127.0.0.1 under a Content-Security-Policy that keeps the page on this host.

The page rerun serves (its wasm viewer) sends usage analytics from the browser to tel.rerun.io, asks
GitHub for the newest release and loads Google's fonts; `rerun analytics disable` reaches none of that,
since it is the native side's switch. `LoopbackWebViewer` serves the same files, fetched from the rerun
web server on an inner loopback port, with a policy under which the browser refuses every request to
another host: only this server and rerun's gRPC port on 127.0.0.1 may be reached
(tests/process/test_view.py watches the page's requests in headless Chromium). It answers only requests
addressed to it by a loopback name (Host 127.0.0.1:PORT or localhost:PORT): a page of another site whose
name was rebound to 127.0.0.1 (DNS rebinding) sends its own Host and is refused.
"""

from __future__ import annotations

import http.client
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fusion_pipeline.view.errors import ViewError

__all__ = ["LoopbackWebViewer", "content_security_policy"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_PASSED_HEADERS = ("Content-Type", "Content-Length", "Content-Encoding", "Last-Modified", "ETag")


def content_security_policy(grpc_port: int) -> str:
    """The page may load and run what this server serves (its inline scripts and the wasm included) and
    fetch only from this server and rerun's gRPC server on 127.0.0.1:`grpc_port`."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "worker-src 'self' blob:",
            f"connect-src 'self' http://127.0.0.1:{grpc_port}",
        ]
    )


class LoopbackWebViewer:
    """An HTTP server on 127.0.0.1:`port` passing GETs on to 127.0.0.1:`upstream_port` (rerun's web
    server) with `content_security_policy(grpc_port)` added; `close` stops it. A request whose Host is
    not 127.0.0.1:PORT or localhost:PORT gets 403."""

    def __init__(self, port: int, upstream_port: int, grpc_port: int) -> None:
        policy = content_security_policy(grpc_port)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                port = self.server.server_address[1]
                host = (self.headers.get("Host") or "").lower()
                if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                    self.send_error(403, f"Host {host!r} is not this loopback server (127.0.0.1:{port})")
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    upstream.request("GET", self.path)
                    reply = upstream.getresponse()
                    self.send_response(reply.status)
                    for name in _PASSED_HEADERS:
                        if reply.getheader(name) is not None:
                            self.send_header(name, reply.getheader(name))
                    self.send_header("Content-Security-Policy", policy)
                    self.end_headers()
                    while chunk := reply.read(_CHUNK):
                        self.wfile.write(chunk)
                except OSError as exc:  # the viewer process gone, or the browser left mid-file
                    log.debug("web viewer %s: %s", self.path, exc)
                finally:
                    upstream.close()

            def log_message(self, format: str, *args: object) -> None:
                log.debug("web viewer: " + format, *args)

        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ViewError(f"web viewer port {port}: cannot serve on 127.0.0.1: {exc.strerror}") from exc
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="web-viewer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
