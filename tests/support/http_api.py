"""API Gateway HTTP API (payload format 2.0) events, as API Gateway and function URLs send them.

Used by the tests, the local webhook server and the sample generator, so all three speak the
same shape.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any


def http_api_event(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    route: bool = True,
) -> dict[str, Any]:
    """``route``: through the HTTP API route (with pathParameters); else a function URL."""
    text: str | None
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "POST /webhooks/{source}" if route else "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("User-Agent", "local"),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "POST /webhooks/{source}" if route else "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }
    if route:
        source = path.rstrip("/").rsplit("/", 1)[-1]
        event["pathParameters"] = {"source": source}
    return event
