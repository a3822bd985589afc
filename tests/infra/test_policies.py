"""Least privilege: one policy per function, naming only the template's
tables, indexes, stream, queues, and the stage's parameters and bus. What the
code calls is held to these policies on every test (tests/iam_check.py);
here, what Lambda itself does with each role, and what no policy may do."""
import pytest

from infra.project import chalice_config, stage_environment, stages
from tests import infra_map

SCOPED_SERVICES = ("dynamodb:", "sqs:", "ssm:", "events:")


def test_every_function_has_a_policy_of_its_own_and_no_generated_one():
    config = chalice_config()
    assert config["autogen_policy"] is False
    files = {name: settings["iam_policy_file"] for name, settings in config["lambda_functions"].items()}
    assert sorted(files) == sorted(infra_map.FUNCTIONS)
    assert len(set(files.values())) == len(files)
    # A stage-wide file would come before the functions' own in Chalice's lookup.
    for stage in config["stages"].values():
        assert "iam_policy_file" not in stage
        for function in (stage.get("lambda_functions") or {}).values():
            assert "iam_policy_file" not in function


def test_chalice_has_a_function_for_every_policy():
    from app import app
    names = ({"api_handler"} | {function.name for function in app.pure_lambda_functions}
             | {source.name for source in app.event_sources})
    assert names == set(infra_map.FUNCTIONS)


@pytest.mark.parametrize("function", infra_map.FUNCTIONS)
def test_no_policy_grants_tables_queues_parameters_or_buses_on_any_resource(function):
    for action, resource in infra_map.policy(function).grants:
        if action.startswith(SCOPED_SERVICES):
            assert resource[0] not in ("*", "logs"), (action, resource)
    for statement in infra_map.policy(function).statements:
        if statement["Resource"] == "*":
            # Only the key SSM decrypts the secrets with, and only through SSM.
            assert statement["Action"] == ["kms:Decrypt"]
            assert statement["Condition"] == {"StringLike": {"kms:ViaService": "ssm.*.amazonaws.com"}}


@pytest.mark.parametrize("function", infra_map.FUNCTIONS)
def test_every_resource_a_policy_names_is_in_the_template(function):
    resources = infra_map.template()["Resources"]
    for _, resource in infra_map.policy(function).grants:
        if resource[0] in ("table", "stream", "streams", "queue"):
            assert resource[1] in resources, resource
        if resource[0] == "index":
            indexes = {index["IndexName"] for index in
                       resources[resource[1]]["Properties"].get("GlobalSecondaryIndexes", [])}
            assert resource[2] in indexes, resource


@pytest.mark.parametrize("stage", stages())
@pytest.mark.parametrize("function", infra_map.FUNCTIONS)
def test_every_function_may_read_the_secrets_its_stage_names_and_no_other(stage, function):
    # The settings read all three at start, in every function.
    environment = stage_environment(stage)
    policy = infra_map.policy(function)
    for name in ("STRIPE_SECRET_KEY_PARAM", "STRIPE_WEBHOOK_SECRET_PARAM", "AUTH_JWT_SECRET_PARAM"):
        assert policy.allows("ssm:GetParameter", ("parameter", environment[name])), name
    assert not policy.allows("ssm:GetParameter", ("parameter", "/customerhub/%s/other/secret" % stage))


@pytest.mark.parametrize("stage", stages())
def test_announcements_go_on_the_bus_each_stage_configures_and_only_announce_access_puts_them(stage):
    bus = stage_environment(stage)["ACCESS_EVENT_BUS"]
    for function in infra_map.FUNCTIONS:
        allowed = infra_map.policy(function).allows("events:PutEvents", ("bus", bus))
        assert allowed == (function == "announce_access"), function


def test_lambda_reads_the_entitlements_stream_and_reports_failures_with_announce_access_role():
    resources = infra_map.template()["Resources"]
    mapping = resources["AnnounceAccessStream"]["Properties"]
    assert mapping["FunctionName"] == {"Ref": "AnnounceAccess"}
    table = mapping["EventSourceArn"]["Fn::GetAtt"][0]
    failures = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    policy = infra_map.policy("announce_access")
    for action in ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"):
        assert policy.allows(action, ("stream", table))
    assert policy.allows("dynamodb:ListStreams", ("streams", table))
    assert policy.allows("sqs:SendMessage", ("queue", failures))


def test_lambda_reads_the_work_queue_with_sync_worker_role():
    event = infra_map.template()["Resources"]["SyncWorker"]["Properties"]["Events"]["SyncWorkerSqsEventSource"]
    queue = event["Properties"]["Queue"]["Fn::Sub"]
    assert queue == "${SyncQueue.Arn}"
    policy = infra_map.policy("sync_worker")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert policy.allows(action, ("queue", "SyncQueue"))


def test_lambda_reads_the_events_queue_with_stripe_events_role():
    event = infra_map.template()["Resources"]["StripeEvents"]["Properties"]["Events"]["StripeEventsSqsEventSource"]
    assert event["Properties"]["Queue"]["Fn::Sub"] == "${EventsQueue.Arn}"
    policy = infra_map.policy("stripe_events")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert policy.allows(action, ("queue", "EventsQueue"))


def test_only_the_api_sends_to_the_events_queue_and_it_may_do_nothing_else_there():
    for function in infra_map.FUNCTIONS:
        assert infra_map.policy(function).allows("sqs:SendMessage", ("queue", "EventsQueue")) == (
            function == infra_map.API), function
    on_the_queue = {action for action, resource in infra_map.policy(infra_map.API).grants
                    if resource == ("queue", "EventsQueue")}
    assert on_the_queue == {"sqs:GetQueueUrl", "sqs:SendMessage"}


def test_the_events_records_are_the_handlers_to_read_and_write_not_the_apis():
    policy = infra_map.policy(infra_map.API)
    for action in ("dynamodb:GetItem", "dynamodb:PutItem"):
        assert not policy.allows(action, ("table", "WebhookEventsTable"))
        assert infra_map.policy("stripe_events").allows(action, ("table", "WebhookEventsTable"))


def test_a_call_outside_a_policy_is_denied_by_the_check():
    policy = infra_map.policy("expire_access")
    assert policy.allows("dynamodb:PutItem", ("table", "EntitlementsTable"))
    assert not policy.allows("dynamodb:DeleteItem", ("table", "EntitlementsTable"))
    assert not policy.allows("dynamodb:Query", ("index", "EntitlementsTable", "grants-index"))
    assert not policy.allows("sqs:SendMessage", ("queue", "EventsQueue"))
    # It puts the shards of a sweep with more due than one run takes on the work queue.
    assert policy.allows("sqs:SendMessage", ("queue", "SyncQueue"))
