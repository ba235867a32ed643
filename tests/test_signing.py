"""AK/SK signatures agree with huaweicloudsdkcore's own Signer (a test-only dependency)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from csbs_trigger.cloud.signing import SdkHmacSha256Auth, authorization
from support.standin import (
    ACCESS_KEY,
    PROJECT_ID,
    PROVIDER_ID,
    SECRET_KEY,
    SECURITY_TOKEN,
    CsbsStandIn,
)

HOST = "service.endpoint.myhuaweicloud.com"


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    ak: str = "AccessKey"
    sk: str = "SecretKey"


def sdk_authorization(case: Case) -> str:
    request = SdkRequest(
        method=case.method,
        schema="https",
        host=HOST,
        resource_path=case.path,
        query_params=list(case.query),
        header_params=dict(case.headers),
        body=case.body,
    )
    return str(
        Signer(BasicCredentials(case.ak, case.sk)).sign(request).header_params["Authorization"]
    )


def ours(case: Case) -> str:
    query = f"?{urlencode(case.query, quote_via=quote)}" if case.query else ""
    return authorization(
        method=case.method,
        url=f"https://{HOST}{quote(case.path)}{query}",
        headers=case.headers,
        body=case.body,
        access_key=case.ak,
        secret_key=case.sk,
    )


# The SDK's own test vectors (csbs-facts.md).
FIXED_HEADERS = {"Host": HOST, "X-Sdk-Date": "20200608T023900Z", "TEST_UNDERSCORE": "unsigned"}


@pytest.mark.parametrize(
    ("method", "body", "signature"),
    [
        ("GET", b"", "cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842"),
        (
            "POST",
            b'{"name":"test","id":1}',
            "436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f",
        ),
    ],
)
def test_fixed_vectors_of_the_sdk(method: str, body: bytes, signature: str) -> None:
    expected = (
        f"SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, Signature={signature}"
    )

    case = Case(method, "/resources", [("size", "1")], FIXED_HEADERS, body)

    assert ours(case) == expected
    assert sdk_authorization(case) == expected


@pytest.mark.parametrize(
    ("path", "query", "body"),
    [
        ("/v1/p/providers/x/checkpoints", [], b'{"checkpoint": {}}'),
        ("/v1/projekt/sicherung-äöü/ß", [], b""),  # non-ASCII path
        ("/v1/服务器/列表", [("名前", "値")], b""),
        ("/v1/a b/c~d", [("b", "2"), ("a", "1"), ("a", "0"), ("empty", "")], b"x"),
        ("/", [("limit", "10"), ("marker", "a/b+c")], b""),
    ],
)
def test_query_strings_paths_and_bodies_agree(
    path: str, query: list[tuple[str, str]], body: bytes
) -> None:
    headers = {"Host": HOST, "X-Sdk-Date": "20261127T020000Z", "X-Project-Id": "p"}
    case = Case("POST", path, query, headers, body)

    assert ours(case) == sdk_authorization(case)


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#%"),
    max_size=12,
)


@settings(max_examples=60)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segments=st.lists(_TEXT.filter(bool), min_size=1, max_size=4),
    query=st.lists(st.tuples(_TEXT.filter(bool), _TEXT), max_size=4),
    body=st.binary(max_size=64),
    project=st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    token=st.none() | st.from_regex(r"[A-Za-z0-9]{20,40}", fullmatch=True),
    seconds=st.integers(min_value=0, max_value=59),
    ak=st.from_regex(r"[A-Z0-9]{20}", fullmatch=True),
    sk=st.from_regex(r"[A-Za-z0-9]{40}", fullmatch=True),
)
def test_generated_requests_agree_with_the_sdk(
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    body: bytes,
    project: str,
    token: str | None,
    seconds: int,
    ak: str,
    sk: str,
) -> None:
    path = "/" + "/".join(segments)
    headers = {"Host": HOST, "X-Sdk-Date": f"20261127T0200{seconds:02d}Z", "X-Project-Id": project}
    if token:
        headers["X-Security-Token"] = token

    case = Case(method, path, query, headers, body, ak, sk)

    assert ours(case) == sdk_authorization(case)


def test_a_changed_body_changes_the_signature() -> None:
    headers = {"Host": HOST, "X-Sdk-Date": "20261127T020000Z"}

    assert ours(Case("POST", "/x", [], headers, b"a")) != ours(
        Case("POST", "/x", [], headers, b"b")
    )


def test_auth_class_signs_real_requests_the_gateway_accepts() -> None:
    with CsbsStandIn() as standin:
        standin.add_plan("plan-1", "plan", {"server-1": "one"})
        url = f"{standin.url}/v1/{PROJECT_ID}/providers/{PROVIDER_ID}/checkpoints"
        body = {"checkpoint": {"plan_id": "plan-1", "parameters": {}}}
        good = SdkHmacSha256Auth(ACCESS_KEY, SECRET_KEY, PROJECT_ID)
        bad = SdkHmacSha256Auth(ACCESS_KEY, "not-the-secret-key", PROJECT_ID)

        accepted = requests.post(url, json=body, auth=good, timeout=10)
        refused = requests.post(url, json=body, auth=bad, timeout=10)

    assert accepted.status_code == 200, accepted.text
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "APIGW.0301"


def test_a_raw_equals_sign_in_a_query_value_belongs_to_the_value() -> None:
    """``a=b=c`` is the key ``a`` with the value ``b=c``, as the gateway reads it."""
    headers = {"Host": HOST, "X-Sdk-Date": "20261127T020000Z"}
    expected = sdk_authorization(Case("GET", "/x", [("filter", "a=b")], headers, b""))

    ours_raw = authorization(method="GET", url=f"https://{HOST}/x?filter=a=b", headers=headers,
                             body=b"", access_key="AccessKey", secret_key="SecretKey")  # fmt: skip

    assert ours_raw == expected


def test_temporary_credentials_send_and_sign_their_security_token() -> None:
    moment = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    auth = SdkHmacSha256Auth(ACCESS_KEY, SECRET_KEY, PROJECT_ID, security_token=SECURITY_TOKEN,
                             now=lambda: moment)  # fmt: skip
    request = requests.Request("GET", f"https://{HOST}/v1/{PROJECT_ID}/checkpoint_items").prepare()

    signed = auth(request)

    assert signed.headers["X-Security-Token"] == SECURITY_TOKEN
    assert "x-security-token" in signed.headers["Authorization"].split("SignedHeaders=")[1]
    headers = {"Host": HOST, "X-Sdk-Date": "20261127T020000Z", "X-Project-Id": PROJECT_ID,
               "X-Security-Token": SECURITY_TOKEN}  # fmt: skip
    case = Case("GET", f"/v1/{PROJECT_ID}/checkpoint_items", [], headers, b"", ACCESS_KEY,
                SECRET_KEY)  # fmt: skip
    assert signed.headers["Authorization"] == sdk_authorization(case)


def test_a_text_body_is_signed_as_its_utf8_bytes() -> None:
    moment = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    auth = SdkHmacSha256Auth(ACCESS_KEY, SECRET_KEY, PROJECT_ID, now=lambda: moment)
    request = requests.Request("POST", f"https://{HOST}/v1/x", data="grüße").prepare()
    assert isinstance(request.body, str)  # requests keeps a text body as text

    signed = auth(request)

    headers = {"Host": HOST, "X-Sdk-Date": "20261127T020000Z", "X-Project-Id": PROJECT_ID}
    case = Case("POST", "/v1/x", [], headers, "grüße".encode(), ACCESS_KEY, SECRET_KEY)
    assert signed.headers["Authorization"] == sdk_authorization(case)


def test_the_headers_sent_are_the_sdks_own_names_and_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Header names are case-insensitive in HTTP, but gateways and their logs are not always:
    send each one spelled as the SDK spells it, with the same values and signature."""
    moment = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)

    class PinnedDatetime(datetime):
        @classmethod
        def utcnow(cls) -> datetime:  # type: ignore[override]
            return moment.replace(tzinfo=None)

    monkeypatch.setattr("huaweicloudsdkcore.signer.signer.datetime", PinnedDatetime)
    path = f"/v1/{PROJECT_ID}/checkpoint_items"
    sdk_request = SdkRequest(method="GET", schema="https", host=HOST, resource_path=path,
                             query_params=[], header_params={}, body=b"")  # fmt: skip
    credentials = BasicCredentials(ACCESS_KEY, SECRET_KEY, PROJECT_ID)
    credentials.with_security_token(SECURITY_TOKEN)
    sdk_headers = credentials.sign_request(sdk_request).header_params
    auth = SdkHmacSha256Auth(ACCESS_KEY, SECRET_KEY, PROJECT_ID, security_token=SECURITY_TOKEN,
                             now=lambda: moment)  # fmt: skip

    signed = auth(requests.Request("GET", f"https://{HOST}{path}").prepare())

    assert sorted(signed.headers.items()) == sorted(sdk_headers.items())


@pytest.mark.parametrize("missing", ["method", "url"])
def test_a_request_without_its_method_or_url_is_not_signed(missing: str) -> None:
    """Signing a guess (an empty URL, GET) would only be refused later, far from the cause."""
    request = requests.Request("POST", f"https://{HOST}/v1/x").prepare()
    setattr(request, missing, None)
    auth = SdkHmacSha256Auth(ACCESS_KEY, SECRET_KEY, PROJECT_ID)

    with pytest.raises(ValueError, match=r"^only a prepared request, with its method and URL, "):
        auth(request)
    assert "Authorization" not in request.headers
