"""POST /webhooks/stripe answers once the event is on the events queue, and
`stripe_events` handles it from there: what the acknowledgement costs, what
Stripe hears when SQS fails, what a failure while handling leaves behind, the
dead-letter queue after the last try, and an event too large for a message.

These post without handing the event on (`deliver(..., handle=False)`) and
drain the queue themselves (`stripe_events.drain()`): one drain is one try."""
import json
import logging

import boto3
import pytest
import stripe

from app import stripe_events as stripe_events_function
from chalicelib.deliveries import reduced_event
from chalicelib.models import EntitlementModel, RateLimitModel, WebhookEventModel
from chalicelib.queues import EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE, MAX_MESSAGE_BYTES, MAX_RECEIVES
from chalicelib.settings import get_settings
# studio is the subscription webhooks' fixture, used here too.
from tests.api.test_subscription_lifecycle import recorded
from tests.api.test_subscription_webhooks import ACCOUNT, access, last_event, studio  # noqa: F401
from tests.helpers import AWS_CALLS, WEBHOOK_SECRET, deliver, signed, stripe_event

SUBSCRIPTION_PATH = "/v1/subscriptions/"
# What Lambda's event source mapping does with the queue around the
# function (here the pump, on the function's behalf): not the function's own.
TRIGGER = {"ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility"}


class Queue:
    def __init__(self, name):
        self.sqs = boto3.client("sqs", region_name=get_settings().aws_region)
        self.url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def holds(self) -> int:
        """Messages on the queue, waiting or in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages",
                                               "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def peek(self) -> list:
        """The bodies waiting, left waiting."""
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [message["Body"] for message in answer.get("Messages") or []]

    def take_all(self) -> list:
        bodies = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages") or []
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def events_queue(aws):
    return Queue(EVENTS_QUEUE)


@pytest.fixture
def dead_letters(aws):
    return Queue(EVENTS_DEAD_LETTER_QUEUE)


def subscribed(studio) -> dict:
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_ana")
    return last_event(studio)


def acknowledged(response) -> bool:
    return (response.status_code, response.json_body) == (200, {"received": True})


# ----------------------------------------------------------- the acknowledgement


def test_a_delivery_is_acknowledged_after_one_sqs_send_without_asking_dynamodb_or_stripe(
        client, studio, stripe_events, events_queue):
    created = subscribed(studio)
    studio.update_subscription(ACCOUNT, "sub_ana", cancel_at_period_end=True)
    updated = last_event(studio)
    stripe_before = len(studio.requests)
    with AWS_CALLS.counting() as first:
        assert acknowledged(deliver(client, created, handle=False))
    # The first delivery a container serves asks the queue's URL, once.
    assert dict(first.calls) == {("sqs", "GetQueueUrl"): 1, ("sqs", "SendMessage"): 1}
    with AWS_CALLS.counting() as calls:
        assert acknowledged(deliver(client, updated, handle=False))
    assert dict(calls.calls) == {("sqs", "SendMessage"): 1}
    assert len(studio.requests) == stripe_before
    # Nothing is done yet: the events wait, as Stripe sent them.
    assert events_queue.holds() == 2
    assert sorted(json.loads(body)["id"] for body in events_queue.peek()) == sorted([created["id"], updated["id"]])
    assert not recorded(created) and list(EntitlementModel.scan()) == []

    assert stripe_events.drain() == {"handled": 2, "failed": 0}
    assert recorded(created) and recorded(updated)
    assert access(client)[0]["state"] == "canceling"
    assert events_queue.holds() == 0


def test_the_signature_comes_before_the_content_type_a_signed_event_is_queued_whatever_type_it_names(
        client, studio, events_queue):
    created = subscribed(studio)
    payload, headers = signed(created)
    _, forged = signed(created, secret="whsec_forged")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        refused = client.post("/webhooks/stripe", headers=dict(forged, **{"Content-Type": content_type}),
                              body=payload)
        assert (refused.status_code, refused.json_body["error"]["code"]) == (400, "invalid_signature")
        too_large = client.post("/webhooks/stripe", headers={"Content-Type": content_type}, body=b"x" * (2 << 20))
        assert (too_large.status_code, too_large.json_body["error"]["code"]) == (413, "payload_too_large")
    assert events_queue.holds() == 0
    taken = client.post("/webhooks/stripe", headers=dict(headers, **{"Content-Type": "text/plain"}), body=payload)
    assert acknowledged(taken)
    assert [json.loads(body)["id"] for body in events_queue.peek()] == [created["id"]]


def test_handling_a_queued_event_costs_at_most_three_dynamodb_and_one_stripe_request(
        client, studio, stripe_events):
    assert acknowledged(deliver(client, subscribed(studio), handle=False))
    stripe_before = len(studio.requests)
    with AWS_CALLS.counting() as calls:
        assert stripe_events.drain() == {"handled": 1, "failed": 0}
    # The account's sites, one read across tables (the event's record, whose
    # the subscription is, the customer's record), and one transaction;
    # beside them, a lease of Stripe slots (tests/api/test_stripe_ceiling.py).
    leases = calls.on(RateLimitModel.Meta.table_name)
    assert calls.of("dynamodb") - leases <= 3, calls.calls
    assert leases <= 1
    assert len(studio.requests) - stripe_before == 1
    # The function itself sends, receives and deletes nothing.
    assert {operation for (service, operation) in calls.calls if service == "sqs"} <= TRIGGER


def test_a_queued_burst_on_one_subscription_costs_one_read_of_stripe(client, studio, stripe_events, access_events):
    subscribed(studio)
    studio.update_subscription(ACCOUNT, "sub_ana", cancel_at_period_end=True)
    studio.update_subscription(ACCOUNT, "sub_ana", cancel_at_period_end=False)
    studio.update_subscription(ACCOUNT, "sub_ana", metadata={"note": "vip"})
    for event in studio.events[-4:]:
        assert acknowledged(deliver(client, event, handle=False))
    reads_before = len(studio.requests_to("GET", "/v1/subscriptions/"))

    assert stripe_events.drain() == {"handled": 4, "failed": 0}

    # The first one handled read Stripe after all four were queued: it saw
    # what each of them says.
    assert len(studio.requests_to("GET", "/v1/subscriptions/")) - reads_before == 1
    assert [e["type"] for e in access_events.drain()] == ["AccessGranted"]
    assert access(client)[0]["state"] == "active"
    assert all(recorded(event) for event in studio.events[-4:])


@pytest.mark.parametrize("fault", [
    "SendMessage refused after the client's retries",
    "SendMessage throttled on every attempt",
    "the queue's URL not found",
])
def test_a_delivery_sqs_does_not_take_is_answered_500_so_stripe_delivers_it_again(
        client, studio, events_queue, aws_faults, fault):
    created = subscribed(studio)
    stripe_before = len(studio.requests)
    if fault.startswith("SendMessage refused"):
        armed = aws_faults.fail("sqs", "SendMessage", code="InternalError")
    elif fault.startswith("SendMessage throttled"):
        armed = aws_faults.answer("sqs", "SendMessage", "ThrottlingException", times=None)
    else:
        armed = aws_faults.fail("sqs", "GetQueueUrl", code="AWS.SimpleQueueService.NonExistentQueue")
    response = deliver(client, created)
    # boto3's SQS client: one attempt and two retries of a throttled send.
    assert armed.hits == (3 if "throttled" in fault else 1)
    assert response.status_code == 500
    assert response.json_body == {"error": {"code": "internal_error",
                                            "message": "The event could not be queued; Stripe will retry"}}
    assert events_queue.holds() == 0
    assert not recorded(created)
    assert len(studio.requests) == stripe_before
    aws_faults.clear()
    # Stripe's next delivery of it.
    assert acknowledged(deliver(client, created))
    assert access(client)[0]["access"] is True


@pytest.mark.parametrize("event", [
    stripe_event("invoice.paid", ACCOUNT, {"id": "in_1", "object": "invoice"}),
    stripe_event("customer.subscription.updated", None, {"id": "sub_1", "object": "subscription"}),
    stripe_event("customer.subscription.updated", ACCOUNT, {"id": "sub_1/../x", "object": "subscription"}),
    stripe_event("customer.subscription.updated", ACCOUNT, {"id": "sub_1"}, event_id="evt_" + "x" * 300),
    stripe_event("account.updated", "acct studio", {"id": "acct studio", "object": "account"}),
    stripe_event("customer.subscription.deleted", ACCOUNT, "sub_1"),
], ids=["a type not handled", "no account", "an object id not Stripe's", "an event id too long",
        "an account id not Stripe's", "no object"])
def test_an_event_the_connector_never_handles_is_acknowledged_without_any_aws_or_stripe_request(
        client, studio, events_queue, event):
    stripe_before = len(studio.requests)
    with AWS_CALLS.counting() as calls:
        assert acknowledged(deliver(client, event, handle=False))
    assert dict(calls.calls) == {}
    assert events_queue.holds() == 0
    assert len(studio.requests) == stripe_before


def test_an_event_for_an_account_no_site_is_connected_to_is_queued_and_ignored_where_it_is_handled(
        client, studio, stripe_events, events_queue):
    event = stripe_event("customer.subscription.updated", "acct_nobody", {"id": "sub_1", "object": "subscription"})
    stripe_before = len(studio.requests)
    assert acknowledged(deliver(client, event, handle=False))
    assert events_queue.holds() == 1
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert events_queue.holds() == 0
    assert not recorded(event)
    assert len(studio.requests) == stripe_before


# ----------------------------------------------------------- handling, from the queue


@pytest.mark.parametrize("fault", ["Stripe's read", "the transaction"])
def test_an_event_whose_handling_fails_comes_again_from_the_queue_and_is_not_done_meanwhile(
        client, studio, stripe_events, events_queue, aws_faults, access_events, fault):
    created = subscribed(studio)
    if fault == "Stripe's read":
        studio.fail_next("GET", SUBSCRIPTION_PATH + "sub_ana", 500, should_retry=False)
    else:
        aws_faults.fail("dynamodb", "TransactWriteItems", code="ProvisionedThroughputExceededException")
    assert acknowledged(deliver(client, created))
    # It failed where it was handled; nothing of it is done.
    assert not recorded(created)
    assert list(EntitlementModel.scan()) == []
    assert access_events.drain() == []
    assert events_queue.holds() == 1
    # The queue's next try.
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert recorded(created)
    assert access(client)[0]["access"] is True
    assert [e["type"] for e in access_events.drain()] == ["AccessGranted"]
    assert events_queue.holds() == 0


def test_an_event_that_fails_on_every_try_goes_to_the_dead_letter_queue_and_is_handled_once_moved_back(
        client, studio, stripe_events, events_queue, dead_letters, access_events, caplog):
    created = subscribed(studio)
    studio.fail_next("GET", SUBSCRIPTION_PATH + "sub_ana", 500, should_retry=False, times=MAX_RECEIVES)
    assert acknowledged(deliver(client, created, handle=False))
    with caplog.at_level(logging.WARNING, logger="chalicelib.deliveries"):
        for _ in range(MAX_RECEIVES):
            assert stripe_events.drain() == {"handled": 0, "failed": 1}
    tries = [r for r in caplog.records if r.name == "chalicelib.deliveries"]
    assert [r.levelname for r in tries] == ["WARNING"] * (MAX_RECEIVES - 1) + ["ERROR"]
    assert "dead-letter queue" in tries[-1].getMessage()
    # After its last try SQS moves it aside.
    assert stripe_events.drain() == {"handled": 0, "failed": 0}
    assert (events_queue.holds(), dead_letters.holds()) == (0, 1)
    assert not recorded(created)
    assert list(EntitlementModel.scan()) == []

    # Its cause fixed, an operator moves the dead letters back (twice, by
    # mistake: the second is a duplicate).
    for body in dead_letters.take_all() * 2:
        events_queue.sqs.send_message(QueueUrl=events_queue.url, MessageBody=body)
    assert stripe_events.drain() == {"handled": 2, "failed": 0}
    assert recorded(created)
    assert access(client)[0]["access"] is True
    assert [e["type"] for e in access_events.drain()] == ["AccessGranted"]


def test_a_message_that_is_not_an_event_goes_to_the_dead_letter_queue_after_its_last_try(
        client, studio, stripe_events, events_queue, dead_letters):
    events_queue.sqs.send_message(QueueUrl=events_queue.url, MessageBody='{"kind": "import"}')
    for _ in range(MAX_RECEIVES):
        assert stripe_events.drain() == {"handled": 0, "failed": 1}
    assert stripe_events.drain() == {"handled": 0, "failed": 0}
    assert dead_letters.take_all() == ['{"kind": "import"}']
    assert list(WebhookEventModel.scan()) == []


def test_a_message_handed_out_twice_at_once_is_handled_once(client, studio, stripe_events, events_queue):
    created = subscribed(studio)
    assert acknowledged(deliver(client, created, handle=False))
    [body] = events_queue.peek()
    # SQS hands a message out at least once: the same body to two invocations.
    record = {"messageId": "m1", "receiptHandle": "r1", "body": body, "attributes": {"ApproximateReceiveCount": "1"}}
    stripe_events_function({"Records": [record]}, None)
    stripe_before = len(studio.requests)
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert len(studio.requests) == stripe_before
    assert [e.event_id for e in WebhookEventModel.scan()] == [created["id"]]


# ----------------------------------------------------------- events too large for a message


def padded(event: dict, size: int) -> dict:
    """The event with a field handling never reads, grown to `size` bytes."""
    event = json.loads(json.dumps(event))
    event["data"]["object"]["description"] = ""
    event["data"]["object"]["description"] = "x" * (size - len(json.dumps(event)))
    return event


def test_an_event_too_large_for_a_message_is_queued_reduced_to_what_handling_reads(
        client, studio, stripe_events, events_queue, access_events):
    created = padded(subscribed(studio), 600 * 1024)
    assert MAX_MESSAGE_BYTES < len(json.dumps(created)) < 1024 * 1024
    assert acknowledged(deliver(client, created, handle=False))
    [body] = events_queue.peek()
    assert len(body.encode("utf-8")) <= MAX_MESSAGE_BYTES
    queued = json.loads(body)
    assert queued == reduced_event(created)
    carried = queued["data"]["object"]
    assert "description" not in carried
    assert {k: queued[k] for k in ("id", "type", "account", "livemode", "created")} == {
        k: created[k] for k in ("id", "type", "account", "livemode", "created")}
    assert (carried["id"], carried["status"], carried["customer"]) == ("sub_ana", "active", "cus_ana")
    [item] = carried["items"]["data"]
    original = created["data"]["object"]["items"]["data"][0]
    assert item == {"id": original["id"], "object": "subscription_item",
                    "current_period_start": original["current_period_start"],
                    "current_period_end": original["current_period_end"],
                    "price": {"id": original["price"]["id"], "object": "price", "product": "prod_yoga"},
                    "plan": {"id": original["plan"]["id"], "object": "plan", "product": "prod_yoga"}}
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert access(client)[0]["access"] is True

    # Stripe no longer has it when its deletion is handled: the reduced copy
    # is what ends the access.
    studio.cancel_subscription(ACCOUNT, "sub_ana")
    deleted = padded(last_event(studio), 900 * 1024)
    studio.forget_subscription(ACCOUNT, "sub_ana")
    assert acknowledged(deliver(client, deleted))
    entry = access(client)[0]
    assert (entry["state"], entry["access"]) == ("expired", False)
    assert [(e["type"], e["reason"]) for e in access_events.drain()] == [
        ("AccessGranted", "subscription_active"), ("AccessRevoked", "subscription_canceled")]


def test_an_account_event_too_large_for_a_message_keeps_its_object_id(client, sandbox, stripe_events, events_queue):
    from tests.api.test_connect_lifecycle import card, connect
    sandbox.create_account(id="acct_gym", display_name="Old Name")
    connect(client, sandbox, "acct_gym")
    sandbox.update_account("acct_gym", display_name="New Name")
    updated = padded(sandbox.events[-1], 400 * 1024)
    assert acknowledged(deliver(client, updated, handle=False))
    [body] = events_queue.peek()
    assert json.loads(body)["data"] == {"object": {"id": "acct_gym", "object": "account"}}
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert card(client)["account"]["display_name"] == "New Name"


def test_a_body_with_characters_sqs_does_not_carry_is_queued_reduced_and_escaped(
        client, studio, stripe_events, events_queue):
    created = subscribed(studio)
    # JSON may carry U+FFFF as it is; SQS refuses it in a message.
    created["data"]["object"]["metadata"] = {"note": "\uffff"}
    payload = json.dumps(created, ensure_ascii=False)
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    response = client.post("/webhooks/stripe", body=payload.encode("utf-8"),
                           headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    assert acknowledged(response)
    [body] = events_queue.peek()
    assert body.isascii()
    assert json.loads(body)["data"]["object"]["metadata"] == {"note": "\uffff"}
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert access(client)[0]["access"] is True
