"""Promises under operational trouble (issue 16): an ordinary day in operations (rights that
blip, odd answers, German plan names, senders' retries, a changed password) never breaks a
promise. Each test names the trouble that broke one before."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest
from conftest import ROOT, Deployment, read_event
from test_completion_tracking import tracked_item
from test_webhooks import SECRETS, generic_event, jira_event

from csbs_trigger.errors import ConfigError
from csbs_trigger.triggers.webhook_sources import SHIPPED_SOURCES, load_sources
from support.http_api import http_api_event
from support.local_aws import Delivered
from support.standin import PASSWORD, SECURITY_TOKEN, Fault

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"  # nightly-app-servers: two servers
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"  # backup: one server
ARN = "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/nightly"


def strict_json(text: str) -> Any:
    """JSON as a strict subscriber reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# -- 7. smaller breaks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "firing",
    [
        {"schedule_arn": ARN + "\ud800", "scheduled_time": "2026-11-28T02:00:00Z"},
        {"schedule_arn": ARN, "scheduled_time": "2026-11-28T02:00:00Z" + "x" * 120_000},
        {"schedule_arn": "a" * 120_000, "scheduled_time": "\udfff"},
    ],
    ids=["surrogate in the ARN", "120,000 characters of time", "both unusable"],
)
def test_an_unusable_firing_is_an_invalid_event_not_a_crash(
    deployment: Deployment, firing: dict[str, str]
) -> None:
    result = deployment.invoke({"plan_id": PLAN_A, **firing})

    [delivered] = deployment.notifications()
    assert result["outcome"] == "failed"
    assert delivered.message["error"]["category"] == "invalid_event"
    assert deployment.standin.calls("csbs") == []
    assert len(delivered.raw_message) < 4096  # the bad values are not carried


def test_a_security_token_outside_latin_1_is_a_config_error_on_both_paths(
    deployment: Deployment,
) -> None:
    deployment.set_secret(deployment.standin.access_key_secret(temporary=True))
    deployment.invoke({"plan_id": PLAN_B})  # a backup to follow
    deployment.notifications()
    token = SECURITY_TOKEN + "\u20ac"  # the euro sign: no header can carry it
    deployment.set_secret(deployment.standin.access_key_secret(security_token=token))
    deployment.cold_start()

    deployment.invoke({"plan_id": PLAN_B})
    with pytest.raises(Exception, match="config_error: the cloud secret key security_token"):
        deployment.track()

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "config_error"
    assert "security_token" in delivered.message["error"]["message"]
    assert len(deployment.standin.calls("csbs")) == 1  # only the first backup


@pytest.mark.parametrize("retry_after", ["inf", "Infinity", "nan", "1e400", "-inf"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(
    deployment: Deployment, retry_after: str
) -> None:
    throttled = Fault(429, {"error_code": "APIGW.0308", "error_msg": "slow down"},
                      {"Retry-After": retry_after})  # fmt: skip
    deployment.standin.fail_next("csbs", throttled, throttled, throttled)

    deployment.invoke({"plan_id": PLAN_B})

    [delivered] = deployment.notifications()
    error = strict_json(delivered.raw_message)["error"]
    assert (error["category"], error["retry_after_seconds"]) == ("throttled", None)
    assert deployment.sleeps == [0.25, 0.5]  # the backoff, not an endless wait


def test_a_webhook_answer_names_a_whole_retry_after_whatever_csbs_said(
    deployment: Deployment,
) -> None:
    throttled = Fault(429, {"error_code": "APIGW.0308"}, {"Retry-After": "Infinity"})
    deployment.standin.fail_next("csbs", throttled, throttled, throttled)

    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}))

    assert answer["statusCode"] == 503
    assert answer["headers"]["Retry-After"] == "30"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_no_number_a_server_sends_makes_a_message_invalid_json(
    deployment: Deployment, constant: bytes
) -> None:
    body = b'{"checkpoint": {"id": "c-nan", "status": "protecting", "extra_info": {"ratio": %s}}}'
    deployment.standin.fail_next("csbs", Fault(200, body % constant))

    deployment.invoke({"plan_id": PLAN_B})

    [delivered] = deployment.notifications()
    message = strict_json(delivered.raw_message)
    assert message["outcome"] == "succeeded"
    assert message["checkpoint"]["extra_info"] == {"ratio": None}


def test_an_answer_of_more_than_1_mib_to_the_post_may_have_created_a_backup(
    deployment: Deployment,
) -> None:
    padding = "x" * (1 << 20)
    deployment.standin.fail_next("csbs", Fault(200, {"checkpoint": {"id": "c-1"}, "pad": padding}))

    deployment.invoke({"plan_id": PLAN_B})

    [delivered] = deployment.notifications()
    error = delivered.message["error"]
    assert (error["category"], error["maybe_created"]) == ("bad_response", True)
    assert len(deployment.standin.calls("csbs")) == 1  # never repeated


def test_a_whsec_secret_without_its_padding_is_accepted(deployment: Deployment) -> None:
    import standardwebhooks

    key = b"sixteen-or-more-bytes-of-key!"
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert unpadded[-1] != "="
    standardwebhooks.Webhook(unpadded)  # the official library takes it
    deployment.aws.update_secret("csbs-trigger/webhooks", {**SECRETS, "generic": [unpadded]})
    deployment.cold_start()

    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}, secret=unpadded))

    assert answer["statusCode"] == 201


# -- 3. a subject SNS refuses never blocks a notification ----------------------------------------


def sns_checks_subjects(deployment: Deployment) -> list[str]:
    """Make moto's SNS refuse what real SNS refuses: a subject that is not ASCII, holds a line
    break or a control character, or is 100 characters or longer (moto checks only the last)."""
    refused: list[str] = []

    def check(params: dict[str, Any], **_: Any) -> Any:
        subject = params.get("Subject")
        if subject is None:
            return None
        if subject.isascii() and subject.isprintable() and len(subject) < 100:
            return None
        refused.append(subject)
        error = {"Error": {"Code": "InvalidParameter", "Message": "Invalid parameter: Subject"}}
        return type("Answer", (), {"status_code": 400})(), error

    deployment.runtime.sns.meta.events.register("before-call.sns.Publish", check)
    return refused


def completed_under_sns_rules(deployment: Deployment, plan_name: str) -> Delivered:
    """The completion of a backup of a one-server plan named ``plan_name``, published to an SNS
    that refuses the subjects real SNS refuses (none may be refused)."""
    deployment.standin.add_plan("plan-named", plan_name, {"srv-1": "server-1"})
    deployment.standin.polls_to_finish = 0
    deployment.invoke({"plan_id": "plan-named"})
    deployment.notifications()
    refused = sns_checks_subjects(deployment)
    deployment.track()
    deployment.track()
    [completed] = deployment.notifications()
    assert refused == []
    return completed


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Sicherung-Täglich", "Sicherung-Taeglich"),
        ("Größe Ünterschied ß", "Groesse Uenterschied ss"),
        ("café crème", "cafe creme"),
        ("日本\nline\x07bell", "?? line?bell"),
    ],
)
def test_a_plan_name_sns_would_refuse_is_transliterated_in_the_subject(
    deployment: Deployment, name: str, shown: str
) -> None:
    completed = completed_under_sns_rules(deployment, name)

    assert completed.subject is not None
    assert completed.subject.startswith(f"CSBS backup completed for plan {shown} (1 server, ")
    # The message keeps the whole name, but for control characters (issue 25.5)
    assert completed.message["plan_name"] == name.replace("\x07", "")


def test_a_long_plan_name_is_cut_to_a_subject_under_100_characters(
    deployment: Deployment,
) -> None:
    completed = completed_under_sns_rules(deployment, "Ä" * 300)

    whole = "CSBS backup completed for plan " + "Ae" * 300
    assert completed.subject == whole[:96] + "..."
    assert len(completed.subject) == 99


# -- 1. a blip in rights or credentials stops the run; no backup ends for it ---------------------

SERVER_A = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"
SERVER_B = "b2b433bf-7dd6-4a74-aa8f-85673dfbda48"


def started(deployment: Deployment, *plans: str) -> list[str]:
    """Backups started by direct invocations, polled once (no items yet); notifications drained."""
    ids = [deployment.invoke({"plan_id": plan})["plans"][0]["checkpoint_id"] for plan in plans]
    deployment.track()
    deployment.notifications()
    return ids


def tracked_state(deployment: Deployment, checkpoint_id: str) -> dict[str, Any]:
    """The tracking table's item, each attribute's value without its DynamoDB type."""
    item = tracked_item(deployment, checkpoint_id)
    return {key: next(iter(value.values())) for key, value in item.items()}


def _forbidden(deployment: Deployment) -> None:
    denied = Fault(403, {"error_code": "APIGW.0302", "error_msg": "The role lost CSBS rights"})
    deployment.standin.fail_next("csbs", denied)


def _token_refused(deployment: Deployment) -> None:
    refused = Fault(401, {"error_code": "APIGW.0301", "error_msg": "token refused"})
    deployment.standin.fail_next("csbs", refused, refused)


def _secret_missing(deployment: Deployment) -> None:
    deployment.set_env("CSBS_SECRET_ID", "csbs-trigger/missing")


def _secret_mended(deployment: Deployment) -> None:
    deployment.set_env("CSBS_SECRET_ID", deployment.secret_arn)


@pytest.mark.parametrize(
    ("trouble", "category", "mend"),
    [(_forbidden, "forbidden", None), (_token_refused, "auth_failed", None),
     (_secret_missing, "config_error", _secret_mended)],
    ids=["403 on a poll", "401 twice", "secret missing"],
)  # fmt: skip
def test_trouble_of_the_deployment_stops_the_run_and_every_backup_waits(
    deployment: Deployment, trouble: Any, category: str, mend: Any
) -> None:
    deployment.set_env("MAX_CONCURRENCY", "1")
    deployment.standin.polls_to_finish = 0
    checkpoints = started(deployment, PLAN_A, PLAN_B)
    trouble(deployment)

    with pytest.raises(Exception, match=rf"^{category}: ") as stopped:
        deployment.track()

    assert type(stopped.value).__name__ == "TrackerStopped"
    assert deployment.notifications() == []
    assert [tracked_state(deployment, c)["state"] for c in checkpoints] == ["pending"] * 2
    if mend:
        mend(deployment)
    assert deployment.track()["succeeded"] == 2
    assert {d.message["outcome"] for d in deployment.notifications()} == {"succeeded"}


def test_trouble_that_lasts_past_the_deadline_ends_each_backup_timed_out_with_its_reason(
    deployment: Deployment,
) -> None:
    deployment.now = 1_800_000_000.0
    deployment.set_env("TRACKING_DEADLINE_SECONDS", "60")
    deployment.set_env("MAX_CONCURRENCY", "1")
    checkpoints = started(deployment, PLAN_A, PLAN_B)
    denied = Fault(403, {"error_code": "APIGW.0302", "error_msg": "The role lost CSBS rights"})
    deployment.standin.fail_next("csbs", denied)
    with pytest.raises(Exception, match=r"^forbidden: "):
        deployment.track()  # before the deadline: both wait
    assert deployment.notifications() == []
    deployment.standin.fail_next("csbs", *[denied] * 5)

    deployment.now += 61
    with pytest.raises(Exception, match=r"^forbidden: "):
        deployment.track()

    delivered = deployment.notifications()
    assert sorted(d.message["checkpoint"]["id"] for d in delivered) == sorted(checkpoints)
    for completed in delivered:
        assert completed.message["outcome"] == "timed_out"
        assert completed.message["error"]["message"].endswith(
            "; the last poll failed (forbidden: CSBS answered HTTP 403: The role lost CSBS rights)"
        )
    assert len([c for c in deployment.standin.calls("csbs") if c.method == "GET"]) == 4


def test_trouble_met_at_the_very_deadline_ends_the_backup_timed_out(deployment: Deployment) -> None:
    """The deadline is the last moment a backup waits for: a poll refused then is its end."""
    deployment.now = 1_800_000_000.0
    deployment.set_env("TRACKING_DEADLINE_SECONDS", "60")
    deployment.set_env("MAX_CONCURRENCY", "1")
    checkpoints = started(deployment, PLAN_A, PLAN_B)
    deployment.now = float(tracked_state(deployment, checkpoints[0])["deadline_at"])
    _forbidden(deployment)

    with pytest.raises(Exception, match=r"^forbidden: "):
        deployment.track()

    # the one refused, and the one the stopped run could not poll: both at their end
    delivered = deployment.notifications()
    assert [d.message["outcome"] for d in delivered] == ["timed_out"] * 2
    assert [tracked_state(deployment, c)["state"] for c in checkpoints] == ["done"] * 2


def test_a_refused_poll_finds_nothing_gone(deployment: Deployment) -> None:
    """A poll refused for the deployment's sake is no poll that found the checkpoint gone: one
    404 after it still only waits."""
    [checkpoint_id] = started(deployment, PLAN_B)
    _forbidden(deployment)
    with pytest.raises(Exception, match=r"^forbidden: "):
        deployment.track()
    gone = Fault(404, {"error_code": "CSBS.3001", "error_msg": "The backup record does not exist"})
    deployment.standin.fail_next("csbs", gone)

    assert deployment.track() == {"due": 1, "running": 1}
    assert deployment.notifications() == []
    assert tracked_state(deployment, checkpoint_id)["state"] == "pending"


# -- 2. one odd answer never poisons the tracker -------------------------------------------------

SERVER_0 = "1c960fe4-e679-421a-97cd-4f7463d2344b"  # plan B's one server


def items_page(checkpoint_id: str, *items: dict[str, Any]) -> Fault:
    listed = [{"checkpoint_id": checkpoint_id, "status": "available", **item} for item in items]
    return Fault(200, {"checkpoint_items": listed})


def test_numbers_and_times_beyond_any_range_are_no_numbers_and_the_run_goes_on(
    deployment: Deployment,
) -> None:
    deployment.set_env("MAX_CONCURRENCY", "1")
    deployment.standin.polls_to_finish = 0
    odd, normal = started(deployment, PLAN_B, PLAN_A)
    huge = int("9" * 400)
    extend = {"progress": huge, "size": huge, "finished_at": "0001-01-01T00:00:00+01:00"}
    deployment.standin.fail_next(
        "csbs", items_page(odd, {"id": "i-1", "resource_id": SERVER_0, "extend_info": extend})
    )

    assert deployment.track() == {"due": 2, "succeeded": 2}

    by_checkpoint = {d.message["checkpoint"]["id"]: d.message for d in deployment.notifications()}
    [item] = by_checkpoint[odd]["items"]
    assert (item["progress"], item["size_mb"], item["finished_at"]) == (None, None, None)
    assert by_checkpoint[normal]["outcome"] == "succeeded"


@pytest.mark.parametrize(
    "answer",
    [
        Fault(404, {"error_code": "CSBS.3001", "error_msg": "The backup record does not exist"}),
        Fault(400, {"error_code": "CSBS.9001", "error_msg": "bad request"}),
        Fault(200, b"<html><body>Service Temporarily Unavailable</body></html>",
              {"Content-Type": "text/html"}),
        Fault(200, b'{"checkpoint_items": [{"id": "\\q"}]}'),
        Fault(200, b'{"checkpoint_items": [{"id": "caf\xe9"}]}'),
    ],
    ids=["404 once", "400 once", "an HTML page", "an invalid escape", "a byte that is no UTF-8"],
)  # fmt: skip
def test_one_unusable_answer_waits_for_the_next_poll(deployment: Deployment, answer: Fault) -> None:
    deployment.standin.polls_to_finish = 0
    started(deployment, PLAN_B)
    deployment.standin.fail_next("csbs", answer)

    assert deployment.track() == {"due": 1, "running": 1}

    assert deployment.notifications() == []
    assert deployment.track() == {"due": 1, "succeeded": 1}
    [completed] = deployment.notifications()
    assert completed.message["outcome"] == "succeeded"


def test_only_the_checkpoints_own_items_count_once_per_server(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    [checkpoint_id] = started(deployment, PLAN_A)
    deployment.standin.fail_next("csbs", items_page(
        checkpoint_id,
        {"id": "i-1", "resource_id": SERVER_A, "checkpoint_id": "another-checkpoint"},
        {"id": "i-2", "resource_id": SERVER_B},
        {"id": "i-3", "resource_id": SERVER_B},
    ))  # fmt: skip

    assert deployment.track() == {"due": 1, "running": 1}  # one of two servers listed

    assert tracked_state(deployment, checkpoint_id)["progress"] == json.dumps(
        {"servers": 2, "available": 1, "failed": 0, "running": 1}
    )
    assert deployment.track() == {"due": 1, "succeeded": 1}


def test_paging_is_bounded_by_what_the_checkpoint_can_hold(deployment: Deployment) -> None:
    """A server that pages on forever (a new item of the same server each page) costs the pages
    two servers fill, then the poll is a bad answer: the next poll tries again."""
    [checkpoint_id] = started(deployment, PLAN_A)
    endless = [items_page(checkpoint_id, {"id": f"i-{n:03}", "resource_id": SERVER_A,
                                          "status": "protecting"}) for n in range(20)]  # fmt: skip
    deployment.standin.fail_next("csbs", *endless)
    gets = len(deployment.standin.calls("csbs"))

    assert deployment.track() == {"due": 1, "running": 1}

    assert len(deployment.standin.calls("csbs")) - gets == 2


def test_a_healthy_poll_costs_one_get(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    gets = len(deployment.standin.calls("csbs"))
    started(deployment, PLAN_A)  # the first poll: an empty list

    assert deployment.track()["succeeded"] == 1  # both servers listed on the first page

    polls = [call for call in deployment.standin.calls("csbs")[gets:] if call.method == "GET"]
    assert len(polls) == 2


# -- 4. nothing the tracker says carries a secret ------------------------------------------------


def test_what_iam_or_csbs_echo_never_leaves_the_tracker(deployment: Deployment, logs: Any) -> None:
    deployment.standin.polls_to_finish = 0
    started(deployment, PLAN_B)
    [token] = deployment.standin.issued_tokens()
    echo = f"denied: token {token} password {PASSWORD}"
    deployment.standin.fail_next(
        "csbs", Fault(403, {"error_code": "APIGW.0302", "error_msg": echo})
    )

    with pytest.raises(Exception, match=r"^forbidden: ") as stopped:
        deployment.track()

    said = logs.getvalue() + str(stopped.value)
    assert "checkpoint poll failed" in said
    assert "tracker run stopped" in said
    assert token not in said
    assert PASSWORD not in said
    assert "[redacted]" in str(stopped.value)
    [state] = [tracked_state(deployment, c["checkpoint_id"]["S"]) for c in _items(deployment)]
    assert token not in state["last_error"]
    assert PASSWORD not in state["last_error"]


def _items(deployment: Deployment) -> list[dict[str, Any]]:
    scan = deployment.aws.client("dynamodb").scan(TableName="csbs-trigger-tracking")
    return scan["Items"]  # type: ignore[no-any-return]


# -- 5. a changed password never locks the account -----------------------------------------------


def logins(deployment: Deployment) -> list[str]:
    """The passwords IAM was sent, in order."""
    return [call.json()["auth"]["identity"]["password"]["user"]["password"]
            for call in deployment.standin.calls("iam")]  # fmt: skip


def test_a_refused_password_is_sent_once_whatever_runs_in_whichever_container(
    deployment: Deployment,
) -> None:
    """The tracker runs every 5 minutes, mostly in a new container, and so may each trigger:
    a changed password is sent once, not once per run (a real Keystone with lockout 3 locked
    the account after three triggers)."""
    deployment.now = 1_800_000_000.0
    started(deployment, PLAN_B)  # a backup to follow
    deployment.standin.password = "changed-elsewhere"
    deployment.standin.revoke_tokens()
    deployment.cold_start()

    for minute in range(0, 55, 5):
        deployment.now += 300
        deployment.cold_start()  # a new container for each run
        with pytest.raises(Exception, match=r"^auth_failed: IAM refused the password"):
            deployment.track()
        deployment.cold_start()
        deployment.invoke({"plan_id": PLAN_A})
        delivery = generic_event({"plan_id": PLAN_A}, delivery=f"d-{minute}",
                                 timestamp=int(deployment.clock()))  # fmt: skip
        assert deployment.invoke_webhook(delivery)["statusCode"] == 502

    assert logins(deployment) == [PASSWORD, PASSWORD]  # the backup's, then one refused
    delivered = deployment.notifications()
    assert len(delivered) == 22
    for failed in delivered:
        assert failed.message["error"]["category"] == "auth_failed"
        assert failed.message["error"]["message"].startswith(
            "IAM refused the password; it is not tried again until the secret changes"
        )


def test_a_changed_secret_is_tried_at_once(deployment: Deployment) -> None:
    deployment.standin.password = "rotated"
    deployment.invoke({"plan_id": PLAN_A})
    deployment.cold_start()
    deployment.invoke({"plan_id": PLAN_A})
    deployment.set_secret(deployment.standin.cloud_secret(password="rotated"))
    deployment.cold_start()

    result = deployment.invoke({"plan_id": PLAN_A})

    assert result["outcome"] == "succeeded"
    assert logins(deployment) == [PASSWORD, "rotated"]


def test_an_unchanged_refused_password_is_tried_once_an_hour_by_one_caller(
    deployment: Deployment,
) -> None:
    deployment.now = 1_800_000_000.0
    deployment.standin.password = "changed-elsewhere"
    deployment.invoke({"plan_id": PLAN_A})  # refused: the mark is set
    deployment.now += 3599
    deployment.cold_start()
    deployment.invoke({"plan_id": PLAN_A})
    assert logins(deployment) == [PASSWORD]

    deployment.now += 2
    deployment.cold_start()
    deployment.invoke({"plan_id": PLAN_A})  # this container takes the hour's one try
    deployment.cold_start()
    deployment.invoke({"plan_id": PLAN_A})  # another finds it taken

    assert logins(deployment) == [PASSWORD, PASSWORD]
    table = deployment.aws.client("dynamodb").scan(TableName="csbs-trigger-login-refusals")
    [mark] = table["Items"]
    assert PASSWORD not in json.dumps(mark)  # a digest, never the credential
    assert float(mark["retry_at"]["N"]) == deployment.now + 3600


def test_a_password_iam_takes_again_clears_its_mark(deployment: Deployment) -> None:
    deployment.now = 1_800_000_000.0
    deployment.standin.password = "changed-elsewhere"
    deployment.invoke({"plan_id": PLAN_A})
    deployment.standin.password = PASSWORD  # the operator changed it back
    deployment.now += 3601
    deployment.cold_start()

    assert deployment.invoke({"plan_id": PLAN_A})["outcome"] == "succeeded"

    table = deployment.aws.client("dynamodb").scan(TableName="csbs-trigger-login-refusals")
    assert table["Items"] == []


# -- 6. a sender's own retries are taken ---------------------------------------------------------


def jira_delivery(signed_at: float, *, delivery: str = "jira-1", field: str = "status") -> Any:
    body = json.loads(read_event("webhook-jira.json")["body"])
    body["timestamp"] = int(signed_at * 1000)
    body["changelog"]["items"][0]["field"] = field
    return jira_event(json.dumps(body).encode(), delivery=delivery, fresh=False)


def test_jira_resending_a_busy_delivery_34_minutes_later_is_taken(
    deployment: Deployment,
) -> None:
    """Jira retries a 503 with the same signed body for up to 30 minutes; a busy plan says
    Retry-After 300."""
    deployment.now = 1_800_000_000.0
    deployment.standin.fail_next("csbs", Fault(500, {"error_code": "CSBS.1001"}))
    first = deployment.invoke_webhook(jira_delivery(deployment.now))
    assert (first["statusCode"], first["headers"]["Retry-After"]) == (503, "300")

    signed_at = deployment.now
    deployment.now += 34 * 60
    again = deployment.invoke_webhook(jira_delivery(signed_at, delivery="jira-retry"))

    assert again["statusCode"] == 201
    assert [c.method for c in deployment.standin.calls("csbs")] == ["POST", "POST"]


@pytest.mark.parametrize(
    ("tolerance", "age", "status"), [(60, 61, 401), (60, 59, 201), (3600, 3500, 201)]
)
def test_a_source_names_its_own_tolerance(
    deployment: Deployment, tolerance: int, age: int, status: int
) -> None:
    shipped = json.loads(SHIPPED_SOURCES.read_text())["generic"]
    override = {"generic": {**shipped, "tolerance_seconds": tolerance}}
    deployment.set_env("WEBHOOK_SOURCES", json.dumps(override))
    stamp = int(deployment.clock())

    deployment.now = stamp + age
    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}, timestamp=stamp))

    assert answer["statusCode"] == status


@pytest.mark.parametrize("tolerance", [86_401, 0, -5, "300", True, None])
def test_a_tolerance_beyond_the_idempotency_records_life_is_a_config_error(
    deployment: Deployment, tolerance: Any
) -> None:
    shipped = json.loads(SHIPPED_SOURCES.read_text())["generic"]
    override = {"generic": {**shipped, "tolerance_seconds": tolerance}}
    deployment.set_env("WEBHOOK_SOURCES", json.dumps(override))

    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}))

    expected = 201 if tolerance is None else 500
    assert answer["statusCode"] == expected
    if tolerance is not None:
        with pytest.raises(ConfigError, match="tolerance_seconds must be a number from 1 to 86400"):
            load_sources(json.dumps(override))


# -- 9. a comment on the change starts nothing ---------------------------------------------------


@pytest.mark.parametrize(
    "changelog",
    [{"items": [{"field": "comment"}]}, {"items": []}, None, {"items": "status"}],
    ids=["a comment", "an edit without items", "no changelog", "items that are no list"],
)
def test_a_jira_delivery_without_a_status_change_is_ignored(
    deployment: Deployment, logs: Any, changelog: Any
) -> None:
    deployment.now = 1_800_000_000.0
    body = json.loads(read_event("webhook-jira.json")["body"])
    body["timestamp"] = int(deployment.now * 1000)
    body["changelog"] = changelog

    answer = deployment.invoke_webhook(jira_event(json.dumps(body).encode(), fresh=False))

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"ignored": (
        "the delivery does not meet the jira source's condition "
        "\"contains(changelog.items[].field || `[]`, 'status')\""
    )}  # fmt: skip
    assert deployment.standin.requests == []
    assert deployment.notifications() == []
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert [line["message"] for line in lines if line.get("source") == "jira"] == [
        "webhook ignored"
    ]


def test_a_condition_that_is_no_jmespath_is_a_config_error(deployment: Deployment) -> None:
    shipped = json.loads(SHIPPED_SOURCES.read_text())["generic"]
    deployment.set_env("WEBHOOK_SOURCES", json.dumps({"generic": {**shipped, "when": "a[?"}}))

    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}))

    assert answer["statusCode"] == 500
    assert deployment.standin.requests == []


# -- 8. Jira Service Management automation rules -------------------------------------------------


AUTOMATION_HEADER = "X-Automation-Webhook-Token"


def automation_event(token: str, *, header: str = AUTOMATION_HEADER) -> Any:
    body = (ROOT / "events" / "webhooks" / "jira-automation.json").read_bytes()
    headers = {"Content-Type": "application/json", header: token}
    return http_api_event("POST", "/webhooks/jira-automation", headers, body)


def test_a_jira_automation_rule_starts_the_backup_its_smart_values_name(
    deployment: Deployment,
) -> None:
    answer = deployment.invoke_webhook(read_event("webhook-jira-automation.json"))

    assert answer["statusCode"] == 201
    assert json.loads(answer["body"])["reference"] == "CHG-43"
    [call] = deployment.standin.calls("csbs")
    assert call.json()["checkpoint"]["parameters"] == {"resources": [SERVER_A, SERVER_B]}
    [delivered] = deployment.notifications()
    assert delivered.message["trigger"]["id"] == "CHG-43 1795743612345"
    again = deployment.invoke_webhook(read_event("webhook-jira-automation.json"))
    assert again["headers"]["Idempotent-Replayed"] == "true"


def rendered_rule_body(issue_key: str, updated: float) -> bytes:
    """The README's rule body as Jira automation renders it (its smart values, for an issue
    last updated at ``updated``, Unix time)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Jira Service Management automation**") :]
    start = section.index("```json") + len("```json")
    template = section[start : section.index("```", start)]
    values = {
        "issue.key": issue_key,
        "issue.customfield_10050": "62171999-3df1-42f7-9513-6f9b1bea4744",
        "issue.customfield_10051": f"{SERVER_A}, {SERVER_B}",
        "issue.updated.toMillis": str(int(updated * 1000)),
        "issue.updated.jqlDateTime": time.strftime("%Y-%m-%d %H:%M", time.gmtime(updated)),
    }
    body = re.sub(r"\{\{([^}]+)\}\}", lambda match: values[match.group(1)], template)
    return body.encode()


def test_two_transitions_a_second_apart_are_two_deliveries_and_a_resend_is_one(
    deployment: Deployment,
) -> None:
    """The README's delivery id for automation rules: a transition, then another one second
    later in the same minute (the change went back and forth), then the second resent."""
    first = 1_795_743_600.250  # 2026-11-27T01:40:00.250Z
    headers = {"Content-Type": "application/json",
               AUTOMATION_HEADER: SECRETS["jira-automation"][0]}  # fmt: skip

    answers = [
        deployment.invoke_webhook(http_api_event(
            "POST", "/webhooks/jira-automation", headers, rendered_rule_body("CHG-43", updated)))
        for updated in (first, first + 1, first + 1)
    ]  # fmt: skip

    assert [answer["statusCode"] for answer in answers] == [201, 201, 201]
    assert [a["headers"].get("Idempotent-Replayed") for a in answers] == [None, None, "true"]
    assert len([c for c in deployment.standin.calls("csbs") if c.method == "POST"]) == 2


@pytest.mark.parametrize(
    ("token", "header"),
    [("wrong-token-of-enough-length", AUTOMATION_HEADER), ("", AUTOMATION_HEADER),
     ("Bearer " + SECRETS["jira-automation"][0], "Authorization")],
    ids=["wrong token", "empty header", "in Authorization instead"],
)  # fmt: skip
def test_a_jira_automation_request_without_its_token_is_401(
    deployment: Deployment, token: str, header: str
) -> None:
    answer = deployment.invoke_webhook(automation_event(token, header=header))

    assert answer["statusCode"] == 401
    assert deployment.standin.requests == []
