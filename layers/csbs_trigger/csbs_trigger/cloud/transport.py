"""HTTP adapter for IAM, CSBS, CBR and the ticket systems: timeouts always set, transport
failures classified.

The rest of the package never sees a ``requests`` exception.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.structures import CaseInsensitiveDict
from urllib3 import exceptions as urllib3_errors

from csbs_trigger import safe_json
from csbs_trigger.errors import UpstreamError, classify_error_answer
from csbs_trigger.values import frozen

MAX_ANSWER_BYTES = 1 << 20


@frozen
class Answer:
    """A complete HTTP answer: status, headers and at most ``MAX_ANSWER_BYTES`` of body."""

    what: str
    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return safe_json.loads(self.body)
        except ValueError:
            raise UpstreamError.bad_response(
                f"{self.what} answered HTTP {self.status} with a body that is not JSON",
                http_status=self.status,
            ) from None

    def error(self, *, token_request: bool = False) -> UpstreamError:
        return classify_error_answer(
            self.what, self.status, self.body, self.headers, token_request=token_request
        )


def send(
    session: requests.Session,
    request: requests.PreparedRequest,
    *,
    what: str,
    timeouts: tuple[float, float],
) -> Answer:
    """Send ``request`` and read its whole answer, translating every transport failure."""
    try:
        with session.send(
            request, timeout=timeouts, stream=True, allow_redirects=False
        ) as response:
            body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
            status, headers = response.status_code, response.headers
    # Reading the streamed body raises urllib3's own errors, which requests does not wrap.
    except (requests.Timeout, urllib3_errors.TimeoutError) as exc:
        raise UpstreamError.timeout(what, request_sent=_may_have_been_sent(exc)) from None
    except (requests.RequestException, urllib3_errors.HTTPError, OSError) as exc:
        raise UpstreamError.network(what, exc, request_sent=_may_have_been_sent(exc)) from None
    if len(body) > MAX_ANSWER_BYTES:
        error = UpstreamError.bad_response(
            f"{what} answered with more than 1 MiB", http_status=status
        )
        error.request_sent = True  # it was answered: a POST may have created a backup
        raise error
    return Answer(what=what, status=status, headers=headers, body=body)


def _may_have_been_sent(exc: BaseException) -> bool:
    """False only when the connection was never made, so the server cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return False
    cause = exc.args[0] if exc.args else None
    cause = getattr(cause, "reason", cause)  # requests wraps urllib3's MaxRetryError
    # NewConnectionError (refused, unresolvable) is a ConnectTimeoutError in urllib3.
    return not isinstance(cause, urllib3_errors.ConnectTimeoutError)
