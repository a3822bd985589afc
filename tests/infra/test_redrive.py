"""python -m infra.redrive against the in-process AWS: every message of a
dead-letter queue goes back to its queue with its body and attributes, a
second redrive moves nothing, an unknown queue moves nothing, and a Stripe
event that failed every try is handled once redriven."""
import io
import json

import boto3
import pytest

from chalicelib.queues import (EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE, MAX_RECEIVES, SYNC_DEAD_LETTER_QUEUE,
                               SYNC_QUEUE)
from infra import redrive
# The queued events' fixtures and helpers (studio: a connected site with a member).
from tests.api.test_subscription_lifecycle import recorded
from tests.api.test_webhook_queue import (SUBSCRIPTION_PATH, Queue, access, acknowledged, dead_letters,  # noqa: F401
                                          events_queue, studio, subscribed)
from tests.helpers import deliver


class Run:
    def __init__(self, *argv):
        self.out, self.err = io.StringIO(), io.StringIO()
        self.status = redrive.main(list(argv), out=self.out, err=self.err)


def sqs():
    return boto3.client("sqs", region_name="us-east-1")


def put(queue_name: str, count: int) -> list:
    """`count` messages on the queue, some with message attributes of each
    type; what was sent, as (body, attributes)."""
    url = sqs().get_queue_url(QueueName=queue_name)["QueueUrl"]
    sent = []
    for n in range(count):
        body = json.dumps({"n": n, "text": "message %d ✓" % n})
        attributes = {}
        if n % 3 == 0:
            attributes = {"origin": {"DataType": "String", "StringValue": "test %d" % n},
                          "tries": {"DataType": "Number", "StringValue": str(n)},
                          "raw": {"DataType": "Binary", "BinaryValue": bytes([n, 0, 255])}}
        sqs().send_message(QueueUrl=url, MessageBody=body, **({"MessageAttributes": attributes} if attributes else {}))
        sent.append((body, _comparable(attributes)))
    return sorted(sent)


def take_all(queue_name: str) -> list:
    """Every message the queue holds, taken off it, as (body, attributes)."""
    client = sqs()
    url = client.get_queue_url(QueueName=queue_name)["QueueUrl"]
    taken = []
    while True:
        messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                          MessageAttributeNames=["All"]).get("Messages") or []
        if not messages:
            return sorted(taken)
        for message in messages:
            taken.append((message["Body"], _comparable(message.get("MessageAttributes") or {})))
            client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _comparable(attributes: dict) -> tuple:
    return tuple(sorted((name, value["DataType"], value.get("StringValue"), value.get("BinaryValue"))
                        for name, value in attributes.items()))


def test_every_dead_letter_goes_back_to_the_events_queue_with_its_body_and_attributes(aws):
    sent = put(EVENTS_DEAD_LETTER_QUEUE, 23)

    run = Run(EVENTS_QUEUE)

    assert run.status == 0
    assert run.out.getvalue() == "Moved 23 messages from %s back to %s.\n" % (EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE)
    assert Queue(EVENTS_DEAD_LETTER_QUEUE).holds() == 0
    assert take_all(EVENTS_QUEUE) == sent


def test_a_second_redrive_moves_nothing(aws):
    sent = put(EVENTS_DEAD_LETTER_QUEUE, 4)
    assert Run(EVENTS_QUEUE).status == 0

    again = Run(EVENTS_QUEUE)

    assert again.status == 0
    assert again.out.getvalue() == "Moved 0 messages from %s back to %s.\n" % (EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE)
    assert take_all(EVENTS_QUEUE) == sent


def test_an_empty_dead_letter_queue_moves_none_and_exits_0(aws):
    run = Run(SYNC_QUEUE)
    assert run.status == 0
    assert run.out.getvalue().startswith("Moved 0 messages")
    assert (Queue(SYNC_QUEUE).holds(), Queue(SYNC_DEAD_LETTER_QUEUE).holds()) == (0, 0)


def test_the_dead_letter_queues_own_name_moves_the_work_queues_and_no_other(aws):
    work = put(SYNC_DEAD_LETTER_QUEUE, 12)
    events = put(EVENTS_DEAD_LETTER_QUEUE, 2)

    run = Run(SYNC_DEAD_LETTER_QUEUE)

    assert run.status == 0
    assert run.out.getvalue() == "Moved 12 messages from %s back to %s.\n" % (SYNC_DEAD_LETTER_QUEUE, SYNC_QUEUE)
    assert take_all(SYNC_QUEUE) == work
    assert Queue(EVENTS_QUEUE).holds() == 0
    assert take_all(EVENTS_DEAD_LETTER_QUEUE) == events


@pytest.mark.parametrize("name", ["events", "stripe-connector-announcement-failures", "stripe-connector-events ",
                                  "", "https://sqs.us-east-1.amazonaws.com/123456789012/stripe-connector-events"])
def test_an_unknown_queue_exits_2_and_moves_nothing(aws, name):
    sent = put(EVENTS_DEAD_LETTER_QUEUE, 3)

    run = Run(name)

    assert run.status == 2
    assert run.out.getvalue() == ""
    assert "is not one of the connector's queues" in run.err.getvalue()
    assert EVENTS_QUEUE in run.err.getvalue() and SYNC_QUEUE in run.err.getvalue()
    assert Queue(EVENTS_QUEUE).holds() == 0
    assert take_all(EVENTS_DEAD_LETTER_QUEUE) == sent


def test_messages_sqs_does_not_take_stay_in_the_dead_letter_queue_and_exit_1(aws, aws_faults):
    put(EVENTS_DEAD_LETTER_QUEUE, 15)
    aws_faults.fail("sqs", "SendMessageBatch", code="KmsThrottled", times=1)

    run = Run(EVENTS_QUEUE)

    assert run.status == 1
    # One batch of ten refused; the other five moved.
    assert run.out.getvalue().startswith("Moved 5 messages")
    assert "10 messages were not taken" in run.err.getvalue() and "KmsThrottled" in run.err.getvalue()
    assert Queue(EVENTS_QUEUE).holds() == 5
    assert Queue(EVENTS_DEAD_LETTER_QUEUE).holds() == 10


def test_a_stripe_event_that_failed_every_try_is_handled_once_redriven(
        client, studio, stripe_events, events_queue, dead_letters):
    created = subscribed(studio)
    studio.fail_next("GET", SUBSCRIPTION_PATH + "sub_ana", 500, should_retry=False, times=MAX_RECEIVES)
    assert acknowledged(deliver(client, created, handle=False))
    for _ in range(MAX_RECEIVES):
        assert stripe_events.drain() == {"handled": 0, "failed": 1}
    # After its last try SQS moves it aside.
    assert stripe_events.drain() == {"handled": 0, "failed": 0}
    assert (events_queue.holds(), dead_letters.holds()) == (0, 1)
    assert not recorded(created)

    assert Run(EVENTS_QUEUE).status == 0
    assert stripe_events.drain() == {"handled": 1, "failed": 0}

    assert recorded(created)
    assert access(client)[0]["access"] is True
    again = Run(EVENTS_QUEUE)
    assert again.out.getvalue().startswith("Moved 0 messages")
    assert (events_queue.holds(), dead_letters.holds()) == (0, 0)
