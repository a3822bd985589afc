"""Stripe's events by Amazon EventBridge (an event destination): the rule
sends the Stripe event source's events into the same queue as the webhook's
deliveries, where they are handled under the same rules; an event that
comes both ways is one event."""
import json

import boto3
import pytest

from chalicelib.settings import get_settings
from local.queues import route_event_source
from tests.api.test_subscription_webhooks import ACCOUNT, access, last_event, studio  # noqa: F401
from tests.helpers import deliver

SOURCE = "aws.partner/stripe.com/ed_test_61SamplesOfADestination"


@pytest.fixture
def event_bridge(client):
    settings = get_settings()
    events = boto3.client("events", region_name=settings.aws_region)
    route_event_source(events, boto3.client("sqs", region_name=settings.aws_region), SOURCE)
    return events


def put_as_stripe(events, event, source=SOURCE):
    """As Stripe's destination puts an event: detail-type its type, detail the event."""
    answer = events.put_events(Entries=[{"Source": source, "DetailType": event["type"],
                                         "Detail": json.dumps(event), "EventBusName": "default"}])
    assert answer["FailedEntryCount"] == 0


def test_an_event_from_the_stripe_event_source_is_handled_from_the_queue(studio, event_bridge, stripe_events,
                                                                          access_events, client):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])

    put_as_stripe(event_bridge, last_event(studio))

    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert [(e["product_id"], e["access"]) for e in access(client)] == [("yoga", True)]
    assert [e["type"] for e in access_events.drain()] == ["AccessGranted"]


def test_an_event_that_comes_both_ways_is_one_event(studio, event_bridge, stripe_events, access_events, client):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    event = last_event(studio)

    assert deliver(client, event).status_code == 200
    put_as_stripe(event_bridge, event)
    stripe_events.drain()

    reads = studio.requests_to("GET", "/v1/subscriptions/")
    assert len(reads) == 1
    assert [e["type"] for e in access_events.drain()] == ["AccessGranted"]


def test_an_event_of_another_source_does_not_reach_the_queue(studio, event_bridge, stripe_events, client):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])

    put_as_stripe(event_bridge, last_event(studio), source="aws.partner/someone.else/forged")

    assert stripe_events.drain() == {"handled": 0, "failed": 0}
    assert access(client) == []
