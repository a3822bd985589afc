"""The rest of the template, held to the code and the contract: the work
and events queues the code names, the stream trigger, API Gateway's own answers and
logs, and an alarm for each thing an operator must hear of."""
import json
import re

import pytest

from chalicelib.observability import SERVICE
from chalicelib.queues import (EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE, MAX_MESSAGE_BYTES, MAX_RECEIVES,
                               SYNC_DEAD_LETTER_QUEUE, SYNC_QUEUE)
from infra.project import chalice_config, stages
from tests import infra_map

# The contract's code for each status API Gateway may answer with.
CODES = {"400": "invalid_request", "401": "unauthorized", "403": "forbidden", "404": "not_found",
         "413": "payload_too_large", "415": "unsupported_media_type", "429": "rate_limited",
         "500": "internal_error", "504": "gateway_timeout"}
# Stream records are kept 24 hours: one given up on must still be there to replay.
STREAM_RETENTION_SECONDS = 24 * 3600


def resources():
    return infra_map.template()["Resources"]


def properties(logical):
    return resources()[logical]["Properties"]


@pytest.mark.parametrize("stage", stages())
def test_the_work_queue_is_the_one_the_code_names_with_room_for_six_worker_timeouts(stage):
    queue = properties("SyncQueue")
    assert queue["QueueName"] == SYNC_QUEUE
    timeout = chalice_config()["stages"][stage]["lambda_functions"]["sync_worker"]["lambda_timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout


def test_a_work_message_goes_to_the_dead_letter_queue_after_the_tries_the_worker_counts():
    redrive = properties("SyncQueue")["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == MAX_RECEIVES
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["SyncDeadLetterQueue", "Arn"]}
    assert properties("SyncDeadLetterQueue")["QueueName"] == SYNC_DEAD_LETTER_QUEUE


@pytest.mark.parametrize("stage", stages())
def test_the_events_queue_is_the_one_the_code_names_with_room_for_six_handler_timeouts(stage):
    queue = properties("EventsQueue")
    assert queue["QueueName"] == EVENTS_QUEUE
    timeout = chalice_config()["stages"][stage]["lambda_functions"]["stripe_events"]["lambda_timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout


def test_the_events_queue_takes_the_message_size_the_webhook_reduces_large_events_to():
    assert properties("EventsQueue")["MaximumMessageSize"] == MAX_MESSAGE_BYTES
    # A message moved aside must fit where it goes, and back.
    assert properties("EventsDeadLetterQueue")["MaximumMessageSize"] == MAX_MESSAGE_BYTES


def test_an_event_goes_to_the_dead_letter_queue_after_the_tries_the_handler_counts():
    redrive = properties("EventsQueue")["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == MAX_RECEIVES
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    assert properties("EventsDeadLetterQueue")["QueueName"] == EVENTS_DEAD_LETTER_QUEUE
    # Kept past the 4 days of the queue itself, for an operator to move back.
    assert (properties("EventsDeadLetterQueue")["MessageRetentionPeriod"]
            > properties("EventsQueue")["MessageRetentionPeriod"])


def test_stripe_events_reads_one_event_at_a_time_from_the_events_queue_at_a_bounded_concurrency():
    from app import app
    [source] = [source for source in app.event_sources if source.name == "stripe_events"]
    assert (source.queue, source.batch_size) == (EVENTS_QUEUE, 1)
    event = properties("StripeEvents")["Events"]["StripeEventsSqsEventSource"]["Properties"]
    assert event["Queue"] == {"Fn::Sub": "${EventsQueue.Arn}"}
    # It calls Stripe: a bound on the mapping (not reserved concurrency, whose
    # throttles would use up the messages' tries), within what Lambda allows.
    assert 2 <= event["ScalingConfig"]["MaximumConcurrency"] <= 10


def test_the_stream_trigger_reports_failed_records_and_gives_up_while_the_stream_still_holds_them():
    mapping = properties("AnnounceAccessStream")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["EntitlementsTable", "StreamArn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRecordAgeInSeconds"] <= STREAM_RETENTION_SECONDS / 2
    assert 0 <= mapping["MaximumRetryAttempts"] <= 10_000
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["AnnouncementFailuresQueue", "Arn"]}


def gateway_responses():
    return properties("RestAPI")["DefinitionBody"]["x-amazon-apigateway-gateway-responses"]


@pytest.mark.parametrize("kind, status, code", [
    ("MISSING_AUTHENTICATION_TOKEN", "404", "not_found"),
    ("THROTTLED", "429", "rate_limited"),
    ("QUOTA_EXCEEDED", "429", "rate_limited"),
    ("REQUEST_TOO_LARGE", "413", "payload_too_large"),
    ("UNSUPPORTED_MEDIA_TYPE", "415", "unsupported_media_type"),
    ("DEFAULT_4XX", None, "invalid_request"),
    ("DEFAULT_5XX", None, "internal_error"),
])
def test_api_gateway_answers_an_unknown_route_a_flood_and_a_huge_body_in_the_contracts_words(kind, status, code):
    response = gateway_responses()[kind]
    # Setting a default's status would set every other response of its class to it.
    assert response.get("statusCode") == status
    assert json.loads(response["responseTemplates"]["application/json"])["error"]["code"] == code


@pytest.mark.parametrize("kind", ["THROTTLED", "QUOTA_EXCEEDED"])
def test_api_gateway_s_own_429_says_when_to_try_again_as_the_contract_asks(kind):
    retry_after = gateway_responses()[kind]["responseParameters"]["gatewayresponse.header.Retry-After"]
    assert retry_after.strip("'").isdigit() and int(retry_after.strip("'")) >= 1


@pytest.mark.parametrize("kind", sorted(gateway_responses()))
def test_no_gateway_response_echoes_the_request(kind):
    response = gateway_responses()[kind]
    body = json.loads(response["responseTemplates"]["application/json"])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if "statusCode" in response:
        assert body["error"]["code"] == CODES[response["statusCode"]]
    # Fixed text: no $context or $method.request variables, no header taken from the request.
    assert "$" not in response["responseTemplates"]["application/json"]
    for name, value in response.get("responseParameters", {}).items():
        assert value.startswith("'") and value.endswith("'"), name


def test_access_logs_name_the_route_never_the_path_or_its_query():
    log_format = properties("RestAPI")["AccessLogSetting"]["Format"]
    variables = set(re.findall(r"\$context\.[\w.]+", log_format))
    assert "$context.resourcePath" in variables and "$context.requestId" in variables
    assert not variables & {"$context.path", "$context.requestOverride", "$context.domainName"}
    assert "$input" not in log_format and "$method" not in log_format
    settings = properties("RestAPI")["MethodSettings"]
    # Execution logs at INFO or with data tracing would hold query strings and headers.
    assert all(s["LoggingLevel"] == "OFF" and s["DataTraceEnabled"] is False for s in settings)
    assert all("ThrottlingRateLimit" in s and "ThrottlingBurstLimit" in s for s in settings)


def test_the_webhook_takes_a_burst_at_its_own_higher_throttle():
    settings = {s["ResourcePath"]: s for s in properties("RestAPI")["MethodSettings"]}
    webhook = settings["/~1webhooks~1stripe"]
    assert (webhook["ThrottlingRateLimit"], webhook["ThrottlingBurstLimit"]) == (
        {"Ref": "WebhookRateLimit"}, {"Ref": "WebhookBurstLimit"})
    parameters = infra_map.template()["Parameters"]
    assert parameters["WebhookRateLimit"]["Default"] > parameters["ApiRateLimit"]["Default"]


def test_stripes_event_destination_reaches_the_events_queue_only_when_named():
    found = resources()
    for name in ("StripeEventBus", "StripeEventRule", "StripeEventQueuePolicy"):
        assert found[name]["Condition"] == "FromEventBridge", name
    rule = found["StripeEventRule"]["Properties"]
    assert rule["EventPattern"] == {"source": [{"Ref": "StripeEventSource"}]}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    statement = found["StripeEventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["StripeEventRule", "Arn"]}}}


def alarms():
    return {name: r["Properties"] for name, r in resources().items() if r.get("Type") == "AWS::CloudWatch::Alarm"}


def test_every_alarm_tells_the_one_topic_when_it_fires_and_when_it_clears():
    for name, alarm in alarms().items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name


def watching(namespace, metric, **dimensions):
    """The alarms on that metric with exactly these dimensions."""
    found = []
    for name, alarm in alarms().items():
        given = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        if alarm["Namespace"] == namespace and alarm["MetricName"] == metric and given == dimensions:
            found.append(name)
    return found


def test_there_is_an_alarm_for_webhook_5xx_dead_letters_the_sweep_and_the_stream():
    assert watching("AWS/ApiGateway", "5XXError", ApiName={"Fn::Sub": "stripe-connector-${Stage}"}, Stage="api",
                    Resource="/webhooks/stripe", Method="POST")
    assert properties("RestAPI")["Name"] == properties("RestAPI")["DefinitionBody"]["info"]["title"] == {
        "Fn::Sub": "stripe-connector-${Stage}"}
    for queue in ("SyncDeadLetterQueue", "EventsDeadLetterQueue", "AnnouncementFailuresQueue"):
        assert watching("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                        QueueName={"Fn::GetAtt": [queue, "QueueName"]}), queue
    # The name and dimension the sweep publishes with (chalicelib/observability.py).
    [sweep] = [alarms()[name] for name in watching("CustomerHub/StripeConnector", "SweepLeft",
                                                   service=SERVICE)]
    assert sweep["Period"] * sweep["EvaluationPeriods"] == 3600 and sweep["Threshold"] == 0
    assert watching("AWS/Lambda", "IteratorAge", FunctionName={"Ref": "AnnounceAccess"})


@pytest.mark.parametrize("function", ["APIHandler", "AnnounceAccess", "ExpireAccess", "CatchUp", "SyncWorker",
                                      "StripeEvents"])
def test_every_function_has_an_errors_and_a_throttles_alarm(function):
    assert watching("AWS/Lambda", "Errors", FunctionName={"Ref": function})
    assert watching("AWS/Lambda", "Throttles", FunctionName={"Ref": function})
