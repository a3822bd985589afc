"""Least privilege: one policy per function, naming only the template's
tables, indexes, stream, queues, the stage's parameters it reads, the bus
and the function's own log group. What the code calls is held to these
policies on every test (tests/iam_check.py); here, what Lambda itself does
with each role, what no policy may do, and which secrets each function reads."""
import boto3
import pytest
from chalice.utils import to_cfn_resource_name

from app import catch_up, expire_access, watch_webhook_endpoint
from chalicelib import services
from chalicelib.settings import SECRET_NAMES
from infra.project import chalice_config, stage_environment, stages
from local.scheduled import scheduled_event
from tests import helpers, infra_map
from tests.api.test_connect_lifecycle import connect

SCOPED_SERVICES = ("dynamodb:", "sqs:", "ssm:", "events:", "logs:")
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")
# The secrets each function reads, each when it first needs it
# (chalicelib/settings.py): the API checks tokens and webhook signatures and
# calls Stripe; announce_access only puts events on the bus.
SECRETS_READ = {function: ("STRIPE_SECRET_KEY",) for function in infra_map.FUNCTIONS}
SECRETS_READ.update({infra_map.API: SECRET_NAMES, "announce_access": ()})


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
def test_no_policy_grants_tables_queues_parameters_buses_or_logs_on_any_resource(function):
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
def test_every_function_may_read_the_secrets_it_uses_of_those_its_stage_names_and_no_other(stage, function):
    environment = stage_environment(stage)
    policy = infra_map.policy(function)
    for name in SECRET_NAMES:
        allowed = policy.allows("ssm:GetParameter", ("parameter", environment[name + "_PARAM"]))
        assert allowed == (name in SECRETS_READ[function]), name
    assert not policy.allows("ssm:GetParameter", ("parameter", "/customerhub/%s/other/secret" % stage))


@pytest.mark.parametrize("function", infra_map.FUNCTIONS)
def test_only_a_function_that_reads_a_secret_may_decrypt_and_only_through_ssm(function):
    decrypting = [statement for statement in infra_map.policy(function).statements
                  if "kms:Decrypt" in statement["Action"]]
    assert len(decrypting) == (1 if SECRETS_READ[function] else 0)


def test_the_functions_logical_ids_are_those_chalice_packages_them_under():
    expected = {function: "APIHandler" if function == infra_map.API else to_cfn_resource_name(function)
                for function in infra_map.FUNCTIONS}
    assert infra_map.LOGICAL_IDS == expected


@pytest.mark.parametrize("function", infra_map.FUNCTIONS)
def test_every_function_writes_logs_to_its_own_log_group_only(function):
    policy = infra_map.policy(function)
    logging = {(action, resource) for action, resource in policy.grants if action.startswith("logs:")}
    own = ("log-group", infra_map.LOGICAL_IDS[function])
    assert logging == {(action, own) for action in LOG_ACTIONS}


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


def test_run_each_in_a_container_of_its_own_every_function_reads_from_ssm_only_the_secrets_it_uses(
        client, sandbox, work, stripe_events, access_events, monkeypatch):
    """As deployed: the three secrets in the stage's SSM parameters. The IAM
    check holds every read to the reading function's policy; the count says
    that each read what it uses, once."""
    environment = stage_environment(infra_map.STAGE)
    values = {"STRIPE_SECRET_KEY": helpers.SECRET_KEY, "STRIPE_WEBHOOK_SECRET": helpers.WEBHOOK_SECRET,
              "AUTH_JWT_SECRET": helpers.JWT_SECRET}
    ssm = boto3.client("ssm", region_name="us-east-1")
    for name, value in values.items():
        ssm.put_parameter(Name=environment[name + "_PARAM"], Value=value, Type="SecureString")
        monkeypatch.setenv(name + "_PARAM", environment[name + "_PARAM"])
        monkeypatch.delenv(name)
    # The webhook's events wait on the queue for stripe_events' own container.
    helpers.QUEUED_EVENTS.consumer = None

    def parameters_read(run):
        services.reset()
        with helpers.AWS_CALLS.counting() as calls:
            run()
        return calls.calls[("ssm", "GetParameter")]

    def api():
        sandbox.create_account(id="acct_gym", display_name="Gym")
        connect(client, sandbox, "acct_gym")
        sandbox.create_product("acct_gym", name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
        sandbox.create_customer("acct_gym", email="ana@gym.test", id="cus_ana",
                                metadata={"customerhub_user_id": "user_ana"})
        sandbox.create_subscription("acct_gym", "cus_ana", ["prod_yoga"])
        assert helpers.deliver(client, sandbox.events[-1]).status_code == 200

    def drained(pump):
        def run():
            counts = pump.drain()
            assert counts["handled"] >= 1 and counts["failed"] == 0, counts
        return run

    def announced():
        assert [event["type"] for event in access_events.drain()] == ["AccessGranted"]

    def scheduled(function):
        return lambda: function(scheduled_event("us-east-1"), None)

    assert parameters_read(api) == 3
    assert parameters_read(drained(stripe_events)) == 1
    assert parameters_read(announced) == 0
    assert parameters_read(drained(work)) == 1  # the connection's import
    for function in (expire_access, catch_up, watch_webhook_endpoint):
        assert parameters_read(scheduled(function)) == 1, function.__name__
