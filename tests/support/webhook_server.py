"""The webhook endpoint on 127.0.0.1, without Docker: a WSGI adapter in front of the handler.

Each HTTP request becomes an API Gateway HTTP API (payload 2.0) event for the webhook Lambda
handler, and its answer goes back as the HTTP response.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from support.http_api import http_api_event
from support.lambda_context import FakeLambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def wsgi_app(handler: Handler) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        event = http_api_event(
            request.method,
            request.path,
            dict(request.headers.items()),
            request.get_data(cache=False),
            route=request.path.startswith("/webhooks/"),
        )
        answer = handler(event, FakeLambdaContext(function_name="csbs-trigger-webhook"))
        response = Response(
            answer.get("body", ""), status=answer["statusCode"], headers=answer.get("headers", {})
        )
        return response(environ, start_response)  # type: ignore[no-any-return]

    return app


class WebhookServer:
    """``with WebhookServer(handler) as server:`` serves on ``server.url`` in a thread."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        """``port`` 0 picks a free one; so does a port that is taken (``url`` tells which)."""
        self._socket = _listening_socket(port)
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, wsgi_app(handler), threaded=True, fd=self._socket.fileno()
        )
        # Polled every 10 ms for its shutdown, not every 500: a test's teardown waits for it.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._socket.close()


def _listening_socket(port: int) -> socket.socket:
    """A socket bound on loopback and kept, so the port cannot be taken in between."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as exc:
        if port == 0 or exc.errno != errno.EADDRINUSE:
            raise
        print(f"port {port} is taken: serving on a free port instead", file=sys.stderr)
        listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener
