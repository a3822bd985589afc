"""python -m infra.replay: an event read from the Stripe sandbox and handled
as a delivery would be, whatever the webhook did with it; a second replay is
a duplicate that changes nothing; ids not shaped like Stripe's and events
Stripe does not have change nothing either."""
import io
import json

import pytest

from chalicelib.models import EntitlementModel, RateLimitModel, WebhookEventModel
from infra import replay
from tests.api.test_connect_lifecycle import connect
from tests.api.test_import import access, heard, member
from tests.helpers import AWS_CALLS, JWT_SECRET, SECRET_KEY, WEBHOOK_SECRET

ACCOUNT = "acct_replayed"
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


class Run:
    def __init__(self, *argv):
        self.out, self.err = io.StringIO(), io.StringIO()
        self.status = replay.main(list(argv), out=self.out, err=self.err)
        self.said = self.out.getvalue() + self.err.getvalue()


@pytest.fixture
def studio(client, sandbox, work):
    """A site connected to an account selling Yoga, whose webhooks Stripe
    cannot deliver."""
    sandbox.create_account(id=ACCOUNT, display_name="Replayed Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    connect(client, sandbox, ACCOUNT)
    work.drain()
    sandbox.hold_webhooks()
    return sandbox


def entitlements() -> list:
    """Every stored entitlement, as DynamoDB holds it."""
    return sorted(json.dumps(item.serialize(), sort_keys=True) for item in EntitlementModel.scan())


def dynamodb_writes(calls) -> int:
    """Writes to the connector's tables, leaving out the leases of Stripe
    slots (stripe_ceiling.py), which any Stripe request takes."""
    writes = sum(n for (service, operation), n in calls.calls.items()
                 if service == "dynamodb" and operation in WRITES)
    return writes - calls.on(RateLimitModel.Meta.table_name)


def test_replaying_an_event_the_webhook_never_delivered_grants_the_member_access(
        client, studio, access_events):
    subscription = studio.create_subscription(ACCOUNT, member(studio, "ana", ACCOUNT), ["prod_yoga"])
    event = studio.events[-1]
    assert event["type"] == "customer.subscription.created"
    assert access(client, "user_ana") == set()

    run = Run(event["id"], "--account", ACCOUNT)

    assert run.status == 0
    assert run.out.getvalue() == "handled: %s (customer.subscription.created about subscription %s on %s)\n" % (
        event["id"], subscription["id"], ACCOUNT)
    assert access(client, "user_ana") == {("yoga", "active", True)}
    assert heard(access_events) == [("AccessGranted", "user_ana", "yoga", "subscription_active", event["id"])]
    asked = studio.requests_to("GET", "/v1/events/" + event["id"])
    assert [request["stripe_account"] for request in asked] == [ACCOUNT]


def test_a_second_replay_says_duplicate_and_changes_nothing(client, studio, access_events):
    studio.create_subscription(ACCOUNT, member(studio, "ana", ACCOUNT), ["prod_yoga"])
    event = studio.events[-1]
    assert Run(event["id"], "--account", ACCOUNT).status == 0
    heard(access_events)
    stored = entitlements()
    assert len(stored) == 1

    with AWS_CALLS.counting() as calls:
        again = Run(event["id"], "--account", ACCOUNT)

    assert again.status == 0
    assert again.out.getvalue().startswith("duplicate: %s (customer.subscription.created" % event["id"])
    assert "nothing changed" in again.out.getvalue()
    assert dynamodb_writes(calls) == 0
    assert entitlements() == stored
    assert heard(access_events) == []
    assert access(client, "user_ana") == {("yoga", "active", True)}


def test_an_event_the_connector_does_not_act_on_is_ignored_and_stores_nothing(client, studio):
    authorized = [event for event in studio.events if event["type"] == "account.application.authorized"]
    assert len(authorized) == 1
    application = authorized[0]["data"]["object"]["id"]

    run = Run(authorized[0]["id"], "--account", ACCOUNT)

    assert run.status == 0
    assert run.out.getvalue() == (
        "ignored: %s (account.application.authorized about application %s on %s): "
        "not a type the connector handles\n" % (authorized[0]["id"], application, ACCOUNT))
    assert list(WebhookEventModel.scan()) == []


def test_an_event_stripe_does_not_have_exits_1_and_stores_nothing(client, studio):
    studio.create_subscription(ACCOUNT, member(studio, "ana", ACCOUNT), ["prod_yoga"])

    run = Run("evt_NoSuchEvent123", "--account", ACCOUNT)

    assert run.status == 1
    assert run.out.getvalue() == ""
    assert "Stripe has no event evt_NoSuchEvent123 on %s" % ACCOUNT in run.err.getvalue()
    assert list(WebhookEventModel.scan()) == []
    assert list(EntitlementModel.scan()) == []
    assert access(client, "user_ana") == set()


def test_an_account_the_platform_is_not_connected_to_exits_1_and_stores_nothing(client, studio):
    studio.create_subscription(ACCOUNT, member(studio, "ana", ACCOUNT), ["prod_yoga"])
    event = studio.events[-1]

    run = Run(event["id"], "--account", "acct_someoneelse")

    assert run.status == 1
    assert "no access to the account" in run.err.getvalue()
    assert list(WebhookEventModel.scan()) == []
    assert access(client, "user_ana") == set()


@pytest.mark.parametrize("event_id, account", [
    ("sub_123", ACCOUNT),
    ("evt_", ACCOUNT),
    ("evt_1 OR 1=1", ACCOUNT),
    ("evt_../../v1/customers", ACCOUNT),
    ("evt_123", "cus_123"),
    ("evt_123", "acct_x\r\nStripe-Account: acct_other"),
])
def test_ids_not_shaped_like_stripes_exit_2_before_asking_stripe(client, studio, event_id, account):
    studio.create_subscription(ACCOUNT, member(studio, "ana", ACCOUNT), ["prod_yoga"])
    asked_before = len(studio.requests)

    run = Run(event_id, "--account", account)

    assert run.status == 2
    assert run.out.getvalue() == ""
    assert "is not a Stripe" in run.err.getvalue()
    assert len(studio.requests) == asked_before
    assert list(WebhookEventModel.scan()) == []
    assert access(client, "user_ana") == set()


def test_no_secret_is_printed_whatever_the_outcome(client, studio):
    studio.create_subscription(ACCOUNT, member(studio, "ana", ACCOUNT), ["prod_yoga"])
    event = studio.events[-1]
    runs = [Run(event["id"], "--account", ACCOUNT), Run(event["id"], "--account", ACCOUNT),
            Run("evt_NoSuchEvent123", "--account", ACCOUNT), Run(event["id"], "--account", "acct_someoneelse")]
    assert [run.status for run in runs] == [0, 0, 1, 1]
    for run in runs:
        for secret in (SECRET_KEY, WEBHOOK_SECRET, JWT_SECRET):
            assert secret not in run.said
