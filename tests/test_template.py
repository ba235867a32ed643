"""template.yaml and the code must agree on names: handler, environment, runtime."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from csbs_trigger.cloud.backend import BackupRequest
from csbs_trigger.triggers.events import parse_event
from support.check_template import expand

ROOT = Path(__file__).resolve().parents[1]
ARN = "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/nightly"
SETTINGS_SOURCE = (ROOT / "layers/csbs_trigger/csbs_trigger/settings.py").read_text()


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return expand(ROOT / "template.yaml")["Resources"]  # type: ignore[no-any-return]


def functions(resources: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]


def test_every_handler_names_a_callable_in_its_code_folder(resources: dict[str, Any]) -> None:
    for function in functions(resources):
        module_name, attribute = function["Handler"].rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module_name), attribute))


def test_environment_names_are_the_ones_the_code_reads(resources: dict[str, Any]) -> None:
    read_by_code = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', SETTINGS_SOURCE))
    for function in functions(resources):
        names = set(function["Environment"]["Variables"]) - {
            "POWERTOOLS_SERVICE_NAME",
            "POWERTOOLS_LOG_LEVEL",
        }
        assert names <= read_by_code, names - read_by_code
        assert {"CSBS_SECRET_ID", "NOTIFICATION_TOPIC_ARN"} <= names


def test_functions_run_on_arm64_python_313_with_the_layer(resources: dict[str, Any]) -> None:
    [layer] = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"
    ]
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    for function in functions(resources):
        assert function["Runtime"] == "python3.13"
        assert function["Architectures"] == ["arm64"]
        assert function["Layers"]


def test_layer_requirements_are_pinned_and_leave_boto3_to_the_runtime() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "layers/csbs_trigger/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.]*", line) for line in lines)
    assert not any(line.lower().startswith(("boto3", "botocore")) for line in lines)


def test_schedule_input_renders_to_an_event_the_function_accepts(
    resources: dict[str, Any],
) -> None:
    schedule = resources["ScheduledBackupFunctionSchedule"]["Properties"]
    with_ids, without_ids = schedule["Target"]["Input"]["Fn::If"][1:]
    targets = {"plan_id": "62171999-3df1-42f7-9513-6f9b1bea4744",  # PlanId, or VaultId
               "vault_id": "3b5816b5-f29c-4172-9d9a-76c719a659ce"}  # fmt: skip
    for form in (with_ids, without_ids):
        template, variables = form["Fn::Sub"]
        # What CloudFormation and then Scheduler make of each form, for a plan and a vault.
        for chosen, (key, target) in enumerate(targets.items()):
            assert variables["Key"]["Fn::If"][2 - chosen] == key
            text = template.replace("${Ids}", '", "'.join(["server-1", "server-2"]))
            text = text.replace("${Key}", key).replace("${Id}", target)
            text = text.replace("<aws.scheduler.schedule-arn>", ARN)
            text = text.replace("<aws.scheduler.scheduled-time>", "2026-11-27T02:00:00Z")
            parsed = parse_event(json.loads(text))
            [request] = parsed.items
            assert isinstance(request, BackupRequest)
            assert (request.backend.target_key, request.target_id) == (key, target)
            assert parsed.trigger.id == ARN + "#2026-11-27T02:00:00Z"
    assert schedule["Target"]["DeadLetterConfig"]["Arn"]
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] >= 1


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("", True), ("7a32a8b5-7977-4e24-b5da-e0eb457db75b", True), ("srv_1", True),
     ('a", "b', False), ('a"', False), ("a b", False), ("-a", False), ("a" * 65, False)],
)  # fmt: skip
def test_each_resource_id_parameter_is_an_id_the_schedule_input_can_carry(
    value: str, allowed: bool
) -> None:
    """CloudFormation checks each value of a CommaDelimitedList against the pattern."""
    pattern = yaml_parse((ROOT / "template.yaml").read_text())["Parameters"]["ResourceIds"]
    assert (re.fullmatch(pattern["AllowedPattern"], value) is not None) is allowed


def test_topic_takes_only_tls_publishing_and_alarms_of_this_account(
    resources: dict[str, Any],
) -> None:
    [policy] = [r for r in resources.values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    deny = statements["DenyInsecureTransport"]
    assert (deny["Effect"], deny["Action"]) == ("Deny", "sns:Publish")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    alarms = statements["AllowAlarmsOfThisAccount"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert all(s["Resource"] == {"Ref": "NotificationTopic"} for s in statements.values())


def test_webhooks_are_bounded_and_the_function_url_is_opt_in() -> None:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    parameters, webhook = template["Parameters"], template["Resources"]["WebhookFunction"]
    assert parameters["EnableFunctionUrl"]["Default"] == "false"
    assert webhook["Properties"]["ReservedConcurrentExecutions"] == {
        "Ref": "WebhookReservedConcurrency"
    }
    assert 1 <= parameters["WebhookReservedConcurrency"]["Default"] <= 10


def test_kms_permissions_exist_only_for_a_given_key_and_name_only_it(
    resources: dict[str, Any],
) -> None:
    roles = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    conditional = [
        statement["Fn::If"]
        for role in roles
        for policy in role.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if "Fn::If" in statement
    ]
    by_sid = {branch[1]["Sid"]: branch for branch in conditional}
    assert by_sid["PublishToTheEncryptedTopic"][0] == "EncryptTopic"
    assert by_sid["PublishToTheEncryptedTopic"][1]["Resource"] == {"Ref": "NotificationKmsKeyArn"}
    assert by_sid["DecryptTheSecrets"][0] == "SecretsUseCustomerKey"
    assert by_sid["DecryptTheSecrets"][1]["Action"] == "kms:Decrypt"
    assert by_sid["DecryptTheSecrets"][1]["Resource"] == {"Ref": "SecretsKmsKeyArn"}
    assert all(branch[2] == {"Ref": "AWS::NoValue"} for branch in conditional)


def _statements(resources: dict[str, Any], function: str) -> dict[str, dict[str, Any]]:
    """The role's own statements of ``function``, by Sid (conditional ones as their true branch)."""
    role = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in resources[role]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    plain = [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]
    return {s["Sid"]: s for s in plain if "Sid" in s}  # SAM's own statements have none


def test_tracker_runs_on_its_schedule_with_its_own_failure_queue(
    resources: dict[str, Any],
) -> None:
    schedule = resources["CompletionTrackerFunctionSchedule"]["Properties"]
    tracker = resources["CompletionTrackerFunction"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "TrackingSchedule"}
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["CompletionTrackerFunction", "Arn"]}
    assert schedule["Target"]["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": ["TrackerFailureQueue", "Arn"]
    }
    assert tracker["Handler"] == "completion_tracker.handler"
    invoke_config = resources["CompletionTrackerFunctionEventInvokeConfig"]["Properties"]
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["TrackerFailureQueue", "Arn"]
    }
    template = yaml_parse((ROOT / "template.yaml").read_text())
    assert template["Parameters"]["TrackingSchedule"]["Default"] == "rate(5 minutes)"
    assert template["Parameters"]["TrackingDeadlineSeconds"]["Default"] == 8 * 3600
    assert template["Parameters"]["TrackingPollIntervalSeconds"]["Default"] == 300


def test_tracking_table_expires_records_and_indexes_only_what_is_due(
    resources: dict[str, Any],
) -> None:
    table = resources["TrackingTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "due"
    assert [key["AttributeName"] for key in index["KeySchema"]] == ["queue", "polled_at"]


REMEMBER_REFUSED_LOGINS = (
    ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
    {"Fn::GetAtt": ["LoginRefusalTable", "Arn"]},
)


def test_every_function_that_logs_in_shares_the_refused_logins(resources: dict[str, Any]) -> None:
    """A refused password must not be sent again by any function: each one reads and writes the
    marks, and nothing else of that table."""
    table = resources["LoginRefusalTable"]["Properties"]
    assert [key["AttributeName"] for key in table["KeySchema"]] == ["login"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    for name in ("ScheduledBackupFunction", "WebhookFunction", "CompletionTrackerFunction",
                 "PlanWorkerFunction"):  # fmt: skip
        remember = _statements(resources, name)["RememberRefusedLogins"]
        assert (remember["Action"], remember["Resource"]) == REMEMBER_REFUSED_LOGINS
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert env["LOGIN_REFUSAL_TABLE"] == {"Ref": "LoginRefusalTable"}


def test_tracking_permissions_are_least_privilege(resources: dict[str, Any]) -> None:
    table = {"Fn::GetAtt": ["TrackingTable", "Arn"]}
    for trigger in ("ScheduledBackupFunction", "WebhookFunction"):
        register = _statements(resources, trigger)["RegisterStartedBackups"]
        assert (register["Action"], register["Resource"]) == ("dynamodb:PutItem", table)
    tracker = _statements(resources, "CompletionTrackerFunction")
    dynamodb = {sid: s for sid, s in tracker.items() if "dynamodb" in json.dumps(s["Action"])}
    assert {sid: (s["Action"], s["Resource"]) for sid, s in dynamodb.items()} == {
        "FollowStartedBackups": ("dynamodb:UpdateItem", table),
        "FindDueBackups": ("dynamodb:Query", {"Fn::Sub": "${TrackingTable.Arn}/index/due"}),
        "RememberRefusedLogins": REMEMBER_REFUSED_LOGINS,
        "RecordHistory": ("dynamodb:PutItem", {"Fn::GetAtt": ["HistoryTable", "Arn"]}),
        "LetCompletedBackupsExpire": (
            "dynamodb:UpdateItem",
            {"Fn::GetAtt": ["ExpiryTable", "Arn"]},
        ),
    }
    assert tracker["ReadCloudSecrets"]["Resource"] == [{"Ref": "CloudSecretArn"}, NAMED_SECRETS]
    assert "webhook" not in json.dumps(tracker).lower()


# The secrets a plan's "credentials" may name: exactly those below the prefix, in this account
# and region (a secret's ARN ends in "-" and six random characters: hence the "*").
NAMED_SECRETS = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                            "${AWS::AccountId}:secret:${CloudSecretPrefix}*"}  # fmt: skip


def test_every_function_may_read_exactly_the_secrets_below_the_prefix(
    resources: dict[str, Any],
) -> None:
    prefix = expand(ROOT / "template.yaml")["Parameters"]["CloudSecretPrefix"]
    assert prefix["Default"] == "csbs-trigger/clouds/"
    assert re.fullmatch(prefix["AllowedPattern"], prefix["Default"])
    assert not re.fullmatch(prefix["AllowedPattern"], "clouds/*")  # no wildcard of one's own
    for name in ("ScheduledBackupFunction", "WebhookFunction", "CompletionTrackerFunction",
                 "PlanWorkerFunction"):  # fmt: skip
        statements = _statements(resources, name)
        readers = [s for s in statements.values() if "secretsmanager" in json.dumps(s["Action"])]
        [reader] = readers
        assert reader["Action"] == "secretsmanager:GetSecretValue"
        assert NAMED_SECRETS in reader["Resource"]
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert env["CLOUD_SECRET_PREFIX"] == {"Ref": "CloudSecretPrefix"}


def test_alarms_watch_failed_and_timed_out_backups_and_the_tracker(
    resources: dict[str, Any],
) -> None:
    alarms = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    watched = {(json.dumps(a["Namespace"]), a["MetricName"]) for a in alarms.values()}
    namespace = json.dumps({"Ref": "MetricsNamespace"})
    assert {(namespace, "BackupsFailed"), (namespace, "BackupsTimedOut")} <= watched
    tracker_queue = alarms["TrackerFailureAlarm"]["Dimensions"][0]["Value"]
    assert tracker_queue == {"Fn::GetAtt": ["TrackerFailureQueue", "QueueName"]}
    for alarm in alarms.values():
        assert alarm["AlarmActions"], "every alarm notifies the topic"
    tracker = resources["CompletionTrackerFunction"]["Properties"]
    service = tracker["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    for name in ("BackupFailedAlarm", "BackupTimedOutAlarm"):
        assert alarms[name]["Dimensions"] == [{"Name": "service", "Value": service}]


def test_large_firings_go_through_a_plan_queue_with_a_dead_letter_queue_and_an_alarm(
    resources: dict[str, Any],
) -> None:
    template = expand(ROOT / "template.yaml")
    worker = resources["PlanWorkerFunction"]["Properties"]
    queue = resources["PlanQueue"]["Properties"]
    assert worker["Handler"] == "plan_worker.handler"
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["SqsManagedSseEnabled"] is True
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["PlanDeadLetterQueue", "Arn"]}
    env = worker["Environment"]["Variables"]
    # a throttled plan is told at its last delivery, before the queue would give it up
    assert redrive["maxReceiveCount"] > int(env["PLAN_MAX_DELIVERIES"]) == 5
    [settings] = [r["Properties"] for r in resources.values()
                  if r["Type"] == "AWS::Lambda::EventSourceMapping"
                  and r["Properties"]["FunctionName"] == {"Ref": "PlanWorkerFunction"}]  # fmt: skip
    assert settings["EventSourceArn"] == {"Fn::GetAtt": ["PlanQueue", "Arn"]}
    assert settings["BatchSize"] <= 10
    assert settings["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert settings["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "PlanWorkerConcurrency"}}
    concurrency = template["Parameters"]["PlanWorkerConcurrency"]
    assert (concurrency["Default"], concurrency["MinValue"]) == (5, 2)
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = [a["Dimensions"][0]["Value"] for a in alarms if a["Namespace"] == "AWS/SQS"]
    assert {"Fn::GetAtt": ["PlanDeadLetterQueue", "QueueName"]} in watched
    for name in ("ScheduledBackupFunction", "PlanWorkerFunction"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert variables["PLAN_QUEUE_URL"] == {"Ref": "PlanQueue"}
    sender = _statements(resources, "ScheduledBackupFunction")["QueuePlans"]
    assert (sender["Action"], sender["Resource"]) == (
        "sqs:SendMessage", {"Fn::GetAtt": ["PlanQueue", "Arn"]},
    )  # fmt: skip
    holder = _statements(resources, "PlanWorkerFunction")["HoldBackThrottledPlans"]
    assert (holder["Action"], holder["Resource"]) == (
        "sqs:ChangeMessageVisibility", {"Fn::GetAtt": ["PlanQueue", "Arn"]},
    )  # fmt: skip


def test_ticket_updates_come_from_the_topic_filtered_to_results_of_senders(
    resources: dict[str, Any],
) -> None:
    """Issue 26.1: the queue takes the topic's started and completed results of triggers that
    name a sender (never a write-back's own report), and the function drains it."""
    template = expand(ROOT / "template.yaml")
    function = resources["TicketUpdateFunction"]["Properties"]
    queue = resources["TicketUpdateQueue"]["Properties"]
    assert function["Handler"] == "ticket_update.handler"
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["TicketUpdateDeadLetterQueue", "Arn"]}
    env = function["Environment"]["Variables"]
    assert redrive["maxReceiveCount"] > int(env["TICKET_MAX_DELIVERIES"]) == 8
    assert env["TICKET_SECRET_ID"] == {"Ref": "TicketSecretArn"}
    subscription = resources["TicketUpdateSubscription"]
    assert subscription["Condition"] == "EnableTicketUpdates"
    properties = subscription["Properties"]
    assert (properties["Protocol"], properties["RawMessageDelivery"]) == ("sqs", True)
    assert properties["Endpoint"] == {"Fn::GetAtt": ["TicketUpdateQueue", "Arn"]}
    assert properties["FilterPolicy"] == {
        "trigger_sender": [{"exists": True}], "event": ["started", "completed"],
    }  # fmt: skip
    [statement] = resources["TicketUpdateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Principal"], statement["Action"]) == (
        {"Service": "sns.amazonaws.com"}, "sqs:SendMessage",
    )  # fmt: skip
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == properties["TopicArn"]
    [settings] = [r["Properties"] for r in resources.values()
                  if r["Type"] == "AWS::Lambda::EventSourceMapping"
                  and r["Properties"]["FunctionName"]["Ref"] == "TicketUpdateFunction"]  # fmt: skip
    assert settings["EventSourceArn"] == {"Fn::GetAtt": ["TicketUpdateQueue", "Arn"]}
    assert settings["BatchSize"] <= 10
    assert settings["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert settings["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "TicketUpdateConcurrency"}}
    concurrency = template["Parameters"]["TicketUpdateConcurrency"]
    assert concurrency["Default"] == 2
    assert template["Parameters"]["TicketSecretArn"]["Default"] == ""
    # Write-back off: no statement names the (empty) secret.
    role = resources["TicketUpdateFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]
    [reader] = [statement for policy in resources[role]["Properties"]["Policies"]
                for statement in policy["PolicyDocument"]["Statement"]
                if statement.get("Fn::If", [""])[0] == "EnableTicketUpdates"]  # fmt: skip
    assert reader["Fn::If"][0] == "EnableTicketUpdates"
    assert reader["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert reader["Fn::If"][1]["Resource"] == {"Ref": "TicketSecretArn"}
    holder = _statements(resources, "TicketUpdateFunction")["HoldBackThrottledWrites"]
    assert holder["Resource"] == {"Fn::GetAtt": ["TicketUpdateQueue", "Arn"]}
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = [a["Dimensions"][0]["Value"] for a in alarms if a["Namespace"] == "AWS/SQS"]
    assert {"Fn::GetAtt": ["TicketUpdateDeadLetterQueue", "QueueName"]} in watched


def test_every_function_that_runs_plans_knows_the_default_backend() -> None:
    """Issue 28.1: DefaultBackend (empty, csbs or cbr) reaches every function that runs plans:
    the scheduled one, the webhook's and the plan worker."""
    template = expand(ROOT / "template.yaml")
    parameter = template["Parameters"]["DefaultBackend"]
    assert parameter["Default"] == ""
    assert parameter["AllowedValues"] == ["", "csbs", "cbr"]
    resources = template["Resources"]
    functions = {name: resource["Properties"] for name, resource in resources.items()
                 if resource["Type"] == "AWS::Lambda::Function"}  # fmt: skip
    for name in ("ScheduledBackupFunction", "WebhookFunction", "PlanWorkerFunction"):
        variables = functions[name]["Environment"]["Variables"]
        assert variables["DEFAULT_BACKEND"] == {"Ref": "DefaultBackend"}, name


def test_the_expiry_sweep_runs_alone_on_its_schedule_with_least_privilege(
    resources: dict[str, Any],
) -> None:
    """Issue 27.4: one sweep at a time, hourly by default; it reads and moves the register on,
    and nothing else of it. Every function that starts backups gives them their lifetime."""
    template = expand(ROOT / "template.yaml")
    function = resources["ExpiryFunction"]["Properties"]
    assert function["Handler"] == "expiry.handler"
    assert function["ReservedConcurrentExecutions"] == 1
    assert template["Parameters"]["ExpirySchedule"]["Default"] == "rate(1 hour)"
    assert template["Parameters"]["ExpiryMode"]["AllowedValues"] == ["delete", "report"]
    keep = template["Parameters"]["DefaultKeepDays"]
    assert keep["Default"] == ""
    accepted = [
        days
        for days in ("", "1", "14", "365", "3650")
        if re.fullmatch(keep["AllowedPattern"], days)
    ]
    assert accepted == ["", "1", "14", "365", "3650"]
    assert not [
        d for d in ("0", "3651", "01", "-1", "1.5") if re.fullmatch(keep["AllowedPattern"], d)
    ]
    table = {"Fn::GetAtt": ["ExpiryTable", "Arn"]}
    sweep = _statements(resources, "ExpiryFunction")
    dynamodb = {sid: (s["Action"], s["Resource"]) for sid, s in sweep.items()
                if "dynamodb" in json.dumps(s["Action"])}  # fmt: skip
    assert dynamodb == {
        "SweepTheRegister": (["dynamodb:GetItem", "dynamodb:UpdateItem"], table),
        "FindExpiredBackups": ("dynamodb:Query", {"Fn::Sub": "${ExpiryTable.Arn}/index/expiring"}),
        "RememberRefusedLogins": REMEMBER_REFUSED_LOGINS,
        "RecordHistory": ("dynamodb:PutItem", {"Fn::GetAtt": ["HistoryTable", "Arn"]}),
    }
    for starter in ("ScheduledBackupFunction", "WebhookFunction", "PlanWorkerFunction"):
        give = _statements(resources, starter)["GiveBackupsTheirLifetime"]
        assert (give["Action"], give["Resource"]) == ("dynamodb:PutItem", table)


# -- the history, the digest, its alarm and the dashboard ------------------------------------

LAYER_SOURCE = "\n".join(
    path.read_text() for path in (ROOT / "layers/csbs_trigger/csbs_trigger").rglob("*.py")
)
EMITTED = set(re.findall(r'metrics\.(?:count|seconds|value)\(\s*"(\w+)"', LAYER_SOURCE))


def test_every_function_that_publishes_records_its_outcomes_in_the_history(
    resources: dict[str, Any],
) -> None:
    table = resources["HistoryTable"]["Properties"]
    assert [key["AttributeName"] for key in table["KeySchema"]] == ["pk", "sk"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    history = {"Fn::GetAtt": ["HistoryTable", "Arn"]}
    for name in ("ScheduledBackupFunction", "WebhookFunction", "CompletionTrackerFunction",
                 "PlanWorkerFunction"):  # fmt: skip
        record = _statements(resources, name)["RecordHistory"]
        assert (record["Action"], record["Resource"]) == ("dynamodb:PutItem", history)
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert env["HISTORY_TABLE"] == {"Ref": "HistoryTable"}


def test_the_digest_runs_on_its_cron_in_the_backups_time_zone_once_per_firing(
    resources: dict[str, Any],
) -> None:
    template = expand(ROOT / "template.yaml")
    digest = resources["DigestFunction"]["Properties"]
    assert digest["Handler"] == "digest.handler"
    assert digest["Environment"]["Variables"]["DIGEST_RPO_SECONDS"] == {"Ref": "DigestRpoSeconds"}
    rpo = template["Parameters"]["DigestRpoSeconds"]
    assert (rpo["Default"], rpo["MinValue"]) == (93600, 1)
    assert template["Parameters"]["DigestSchedule"]["Default"] == "cron(0 7 * * ? *)"
    schedule = resources["DigestFunctionSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "DigestSchedule"}
    assert schedule["ScheduleExpressionTimezone"] == {"Ref": "ScheduleTimezone"}
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["DigestFunction", "Arn"]}
    assert schedule["Target"]["DeadLetterConfig"]["Arn"]
    # What Scheduler sends: the firing's time, which the digest's period ends at and its key
    fired = schedule["Target"]["Input"].replace(
        "<aws.scheduler.scheduled-time>", "2026-12-03T07:00:00Z"
    )
    from csbs_trigger.digest import _scheduled_time

    assert _scheduled_time(json.loads(fired)) == 1796281200.0
    statements = _statements(resources, "DigestFunction")
    assert statements["ReadHistory"]["Resource"] == {"Fn::GetAtt": ["HistoryTable", "Arn"]}
    assert statements["PublishOncePerFiring"]["Resource"] == {
        "Fn::GetAtt": ["IdempotencyTable", "Arn"]
    }
    assert "secretsmanager" not in json.dumps(statements)  # the digest holds no credentials


def test_an_alarm_fires_on_plans_breaching_their_rpo(resources: dict[str, Any]) -> None:
    alarm = resources["PlansBreachingRpoAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ({"Ref": "MetricsNamespace"},
                                                         "PlansBreachingRpo")  # fmt: skip
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["Period"] >= 86400  # one digest a day: its value holds until the next
    assert alarm["AlarmActions"]
    assert "PlansBreachingRpo" in EMITTED


def test_the_dashboard_is_built_from_the_templates_own_names(resources: dict[str, Any]) -> None:
    """Its body, rendered as CloudFormation would, is JSON whose metrics are the ones the code
    emits in the stack's namespace, whose queues are the stack's, and whose Logs Insights
    query reads the stack's log groups."""
    body, variables = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = {"AWS::Region": "eu-de", "MetricsNamespace": "Ns", "WebhookSource": ""}
    for name in ("FailedInvocationQueue", "TrackerFailureQueue", "PlanDeadLetterQueue"):
        assert name in resources
        names[f"{name}.QueueName"] = f"queue-{name}"
    for name in ("ScheduledBackupLogGroup", "PlanWorkerLogGroup", "TrackerLogGroup"):
        assert resources[name]["Type"] == "AWS::Logs::LogGroup"
        names[name] = f"group-{name}"
    rendered = re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], body)
    widgets = json.loads(rendered)["widgets"]
    titles = [widget["properties"]["title"] for widget in widgets]
    assert titles == ["Backups per day", "Failed backups per day, by category",
                      "Backup duration (s)", "Waiting in failure queues",
                      "Oldest backup still tracked (s), plans breaching their RPO",
                      "Last failures"]  # fmt: skip
    shown, namespace = set(), None
    for widget in widgets:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], str) and row[0] != "...":  # "." repeats the row above
                namespace = namespace if row[0] == "." else row[0]
                if namespace == "Ns":
                    shown.add(row[1])
    rows = [json.dumps(row) for w in widgets if w["type"] == "metric"
            for row in w["properties"]["metrics"]]  # fmt: skip
    assert shown <= EMITTED, shown - EMITTED
    assert {
        "BackupsStarted",
        "BackupsCompleted",
        "BackupsFailed",
        "BackupsTimedOut",
        "BackupDurationSeconds",
        "OldestTrackedBackupSeconds",
        "PlansBreachingRpo",
    } <= shown
    searched = set(re.findall(r'MetricName=\\"(\w+)\\"', "".join(rows)))
    assert searched == {"BackupsFailed", "BackupsNotStarted"} <= EMITTED
    assert all(f"queue-{name}" in "".join(rows) for name in
               ("FailedInvocationQueue", "TrackerFailureQueue", "PlanDeadLetterQueue"))  # fmt: skip
    [logs] = [w for w in widgets if w["type"] == "log"]
    query = logs["properties"]["query"]
    assert re.findall(r"SOURCE '([^']+)'", query) == [
        "group-ScheduledBackupLogGroup",
        "group-PlanWorkerLogGroup",
        "group-TrackerLogGroup",
    ]
    assert "'backup trigger failed'" in query
    assert "'backup completion reported'" in query
    # the log lines it filters on are the ones the code writes, with the fields it shows
    assert 'logger.warning("backup trigger failed"' in LAYER_SOURCE
    assert '"backup completion reported"' in LAYER_SOURCE
    webhook = variables["WebhookSource"]["Fn::If"]
    assert webhook[0] == "EnableWebhooks"
    assert webhook[1] == {"Fn::Sub": " | SOURCE '${WebhookLogGroup}'"}


def test_the_history_is_recoverable_and_the_other_tables_say_why_not(
    resources: dict[str, Any],
) -> None:
    """35 days of audit can be restored from any second of the last 35 days; the idempotency
    and login-refusal tables hold nothing that cannot be made again (README, Security)."""
    history = resources["HistoryTable"]["Properties"]
    assert history["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    readme = " ".join((ROOT / "README.md").read_text().split())
    for table in ("IdempotencyTable", "LoginRefusalTable"):
        assert "PointInTimeRecoverySpecification" not in resources[table]["Properties"]
        assert f"`{table}` has no point-in-time recovery" in readme


def test_the_webhook_api_logs_each_request_without_its_credentials(
    resources: dict[str, Any],
) -> None:
    [stage] = [r["Properties"] for r in resources.values()
               if r["Type"] == "AWS::ApiGatewayV2::Stage"]  # fmt: skip
    settings = stage["AccessLogSettings"]
    group = settings["DestinationArn"]["Fn::GetAtt"][0]
    assert resources[group]["Type"] == "AWS::Logs::LogGroup"
    assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fields = json.loads(settings["Format"])  # one JSON object a request
    assert {"requestId", "status", "routeKey", "path", "ip"} <= set(fields)
    text = settings["Format"].lower()
    for never in ("authorization", "querystring", "header", "$context.authorizer"):
        assert never not in text
