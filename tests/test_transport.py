"""The HTTP adapter on its own: whole answers read within their bound (gzip too), every transport
failure translated, and whether the request may have reached the server (``maybe_created``)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3 import exceptions as urllib3_errors

from csbs_trigger.cloud.transport import MAX_ANSWER_BYTES, Answer, send
from csbs_trigger.errors import Category, UpstreamError
from support.standin import CsbsStandIn, Fault


@pytest.fixture(scope="module")
def standin() -> Iterator[CsbsStandIn]:
    with CsbsStandIn() as server:
        yield server


def fetch(standin: CsbsStandIn, answer: Fault) -> Answer:
    standin.fail_next("csbs", answer)
    request = requests.Request("GET", f"{standin.url}/v1/anything").prepare()
    return send(requests.Session(), request, what="CSBS", timeouts=(3, 10))


def padded(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes."""
    shell = b'{"pad": ""}'
    return json.dumps({"pad": "a" * (size - len(shell))}).encode()


def test_an_answer_of_exactly_the_bound_is_read_whole(standin: CsbsStandIn) -> None:
    answer = fetch(standin, Fault(200, padded(MAX_ANSWER_BYTES)))

    assert (answer.what, answer.status, len(answer.body)) == ("CSBS", 200, MAX_ANSWER_BYTES)
    assert answer.json()["pad"].startswith("a")


def test_one_byte_more_is_a_bad_response(standin: CsbsStandIn) -> None:
    with pytest.raises(UpstreamError) as raised:
        fetch(standin, Fault(200, padded(MAX_ANSWER_BYTES + 1)))

    error = raised.value
    assert (error.category, error.http_status) == (Category.BAD_RESPONSE, 200)
    assert error.message == "CSBS answered with more than 1 MiB"
    assert error.request_sent is True  # answered: the request arrived


def test_a_gzip_bomb_is_refused_without_being_inflated(standin: CsbsStandIn) -> None:
    """64 KB on the wire, 64 MiB inflated: only a little more than the bound is ever decoded."""
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)
    assert len(bomb) < MAX_ANSWER_BYTES

    tracemalloc.start()
    try:
        with pytest.raises(UpstreamError) as raised:
            fetch(standin, Fault(200, bomb, {"Content-Encoding": "gzip"}))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert raised.value.message == "CSBS answered with more than 1 MiB"
    assert peak < 8 * MAX_ANSWER_BYTES  # reading it whole would hold all 64 MiB at once


def test_a_gzip_answer_is_read_as_its_content(standin: CsbsStandIn) -> None:
    document = {"checkpoint": {"id": "c-1"}}

    answer = fetch(standin, Fault(200, gzip.compress(json.dumps(document).encode()),
                                  {"Content-Encoding": "gzip"}))  # fmt: skip

    assert answer.json() == document


def test_what_answered_is_named_in_every_error() -> None:
    answer = Answer("CSBS", 502, CaseInsensitiveDict(), b"<html>bad gateway</html>")

    with pytest.raises(UpstreamError) as raised:
        answer.json()
    assert raised.value.message == "CSBS answered HTTP 502 with a body that is not JSON"
    assert raised.value.http_status == 502
    assert answer.error().message == "CSBS answered HTTP 502: <html>bad gateway</html>"


class Failing(HTTPAdapter):
    """A transport that fails as requests reports it, before any answer."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise self.exc


def _refused() -> requests.ConnectionError:
    reason = urllib3_errors.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3_errors.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "category", "message", "may_have_arrived"),
    [
        (requests.ReadTimeout(), Category.TIMEOUT, "CSBS did not answer in time", True),
        (requests.ConnectTimeout(), Category.TIMEOUT, "CSBS did not answer in time", False),
        (urllib3_errors.ReadTimeoutError(None, "/", "slow"), Category.TIMEOUT,  # type: ignore[arg-type]
         "CSBS did not answer in time", True),
        (requests.exceptions.SSLError(), Category.NETWORK,
         "CSBS could not be reached (SSLError)", False),
        (_refused(), Category.NETWORK, "CSBS could not be reached (ConnectionError)", False),
        (requests.ConnectionError(urllib3_errors.NewConnectionError(None, "refused")),  # type: ignore[arg-type]
         Category.NETWORK, "CSBS could not be reached (ConnectionError)", False),
        (requests.ConnectionError(), Category.NETWORK,
         "CSBS could not be reached (ConnectionError)", True),
        (ConnectionResetError(), Category.NETWORK,
         "CSBS could not be reached (ConnectionResetError)", True),
    ],
)  # fmt: skip
def test_transport_failures_are_translated(
    exc: BaseException, category: Category, message: str, may_have_arrived: bool
) -> None:
    session = requests.Session()
    session.mount("http://", Failing(exc))
    request = requests.Request("POST", "http://127.0.0.1:9/v1/x", data=b"{}").prepare()

    with pytest.raises(UpstreamError) as raised:
        send(session, request, what="CSBS", timeouts=(1, 1))

    error = raised.value
    assert (error.category, error.message, error.request_sent) == (
        category, message, may_have_arrived,
    )  # fmt: skip
