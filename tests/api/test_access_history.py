"""Access history: every stored change of a member's entitlement, with its
cause, in the same write as the change; the admin's and the member's routes."""
import time

import pytest

from app import catch_up, watch_webhook_endpoint
from chalicelib import services
from chalicelib.models import CatchUpModel
from local.scheduled import scheduled_event
from tests.api.test_metrics import emf  # noqa: F401  (a fixture)
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.api.test_expire_access import at, delivered, sweep_at
from tests.helpers import AWS_CALLS, bearer, deliver

ACCOUNT = "acct_studio"
DAY = 24 * 3600
ANA = bearer(sub="user_ana", role="member", email="ana@studio.test")


@pytest.fixture
def studio(client, sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    connect(client, sandbox, ACCOUNT)
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_customer(ACCOUNT, email="ana@studio.test", id="cus_ana",
                            metadata={"customerhub_user_id": "user_ana"})
    return sandbox


def history(client, path="/access/user_ana/history", headers=ADMIN, **query):
    suffix = "&".join("%s=%s" % item for item in query.items())
    response = client.get(path + ("?" + suffix if suffix else ""), headers=headers)
    assert response.status_code == 200, response.json_body
    return response.json_body


def lines(client, **options):
    """(from state, to state, reason, cause kind) of each change, oldest first."""
    return [((entry["from"] or {}).get("state"), entry["to"]["state"], entry["reason"], entry["cause"]["kind"])
            for entry in reversed(history(client, **options)["history"])]


def test_granted_cancelled_renewed_and_ended_by_the_sweep_reads_as_four_changes_with_their_causes(client, studio):
    period_end = int(time.time()) + 30 * DAY
    created = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], period_end=period_end)
    delivered(client, studio.events[-1])
    studio.renew_subscription(ACCOUNT, created["id"], period_end=period_end + 30 * DAY)
    delivered(client, studio.events[-1])
    studio.update_subscription(ACCOUNT, created["id"], cancel_at_period_end=True)
    cancelled = studio.events[-1]
    delivered(client, cancelled)
    # The same event again, and a change that moves nothing: no new line.
    delivered(client, cancelled)
    studio.update_subscription(ACCOUNT, created["id"], metadata={"note": "vip"})
    delivered(client, studio.events[-1])
    studio.cancel_subscription(ACCOUNT, created["id"])  # its webhook lost: the sweep ends it
    assert sweep_at(at(period_end + 30 * DAY + 60)).run().revoked == 1

    assert lines(client) == [
        (None, "active", "subscription_active", "stripe_event"),
        ("active", "active", "subscription_active", "stripe_event"),
        ("active", "canceling", "subscription_active", "stripe_event"),
        ("canceling", "expired", "period_ended", "sweep"),
    ]
    entries = list(reversed(history(client)["history"]))
    assert entries[0]["product_id"] == "yoga" and entries[0]["subscription_id"] == created["id"]
    assert entries[0]["to"] == {"state": "active", "access": True,
                                "access_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(period_end))}
    assert entries[1]["from"]["access_until"] != entries[1]["to"]["access_until"]  # the renewal moved it
    assert entries[2]["cause"]["id"] == cancelled["id"]
    assert entries[3]["from"] == entries[2]["to"] and entries[3]["to"]["access"] is False
    assert entries[3]["cause"]["id"].startswith("sweep_")
    # The member reads the same page of their own; names ride beside it.
    own = history(client, path="/access/history", headers=ANA)
    assert own["history"] == history(client)["history"]
    assert own["product_names"] == {"yoga": "Yoga"}


def test_history_is_written_in_the_events_own_transaction(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], period_end=int(time.time()) + 30 * DAY)
    event = studio.events[-1]
    with AWS_CALLS.counting() as calls:
        delivered(client, event)
    requests = {operation: n for (service, operation), n in calls.calls.items() if service == "dynamodb"}
    assert requests.get("TransactWriteItems") == 1
    assert "PutItem" not in requests and "BatchWriteItem" not in requests
    assert len(history(client)["history"]) == 1


def test_a_link_and_its_undoing_name_the_admin_and_an_import_names_itself(client, sandbox, work):
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_customer(ACCOUNT, email="bo@studio.test", id="cus_bo")  # names no member
    linked = sandbox.create_subscription(ACCOUNT, "cus_bo", ["prod_yoga"], period_end=int(time.time()) + 30 * DAY)
    sandbox.create_customer(ACCOUNT, email="ana@studio.test", id="cus_ana",
                            metadata={"customerhub_user_id": "user_ana"})
    imported = sandbox.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"],
                                           period_end=int(time.time()) + 30 * DAY)
    connect(client, sandbox, ACCOUNT)
    assert work.drain()["failed"] == 0  # the import of both

    answer = client.post("/connectors/stripe/unmatched/%s/link" % linked["id"], headers=ADMIN,
                         body='{"user_id": "user_bo"}')
    assert answer.status_code == 200, answer.json_body
    assert client.delete("/connectors/stripe/links/" + linked["id"], headers=ADMIN).status_code == 200

    bo = [(entry["from"], entry["to"]["state"], entry["reason"], entry["cause"])
          for entry in reversed(history(client, path="/access/user_bo/history")["history"])]
    assert [(state, reason, cause["kind"]) for _, state, reason, cause in bo] == [
        ("active", "subscription_active", "link"), ("expired", "subscription_unlinked", "unlink")]
    assert bo[0][0] is None and bo[1][0]["state"] == "active"
    assert {cause["id"] for _, _, _, cause in bo} == {"admin_1"}
    ana = history(client)["history"]
    assert [(entry["cause"]["kind"], entry["subscription_id"]) for entry in ana] == [("import", imported["id"])]


def test_an_event_only_the_catch_up_found_is_its_cause_and_counts_as_missed_on_the_card(client, studio, work):
    assert work.drain()["failed"] == 0  # the connection's import, of nothing
    studio.hold_webhooks()
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], period_end=int(time.time()) + 30 * DAY)
    missed = studio.events[-1]
    studio.hold_webhooks(False)
    card = client.get("/connectors/stripe", headers=ADMIN).json_body
    assert card["events"] == {"last_received_at": None, "last_caught_up_at": None, "missed_last_day": 0,
                              "endpoint": "unknown"}

    catch_up(scheduled_event("us-east-1"), None)
    assert work.drain()["failed"] == 0

    [entry] = history(client)["history"]
    assert entry["cause"] == {"kind": "catch_up", "id": missed["id"]}
    events = client.get("/connectors/stripe", headers=ADMIN).json_body["events"]
    assert events["missed_last_day"] == 1
    assert events["last_caught_up_at"] == CatchUpModel.get(ACCOUNT).ran_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert events["last_received_at"] is not None
    # Delivered late after all: a duplicate, still one missed event.
    deliver(client, missed)
    assert client.get("/connectors/stripe", headers=ADMIN).json_body["events"]["missed_last_day"] == 1


def test_pages_newest_first_with_a_cursor_and_refuses_a_bad_limit_or_cursor(client, studio):
    for n in range(3):
        created = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"],
                                             period_end=int(time.time()) + (30 + n) * DAY)
        delivered(client, studio.events[-1])
    everything = history(client)["history"]
    assert len(everything) == 3
    assert [entry["at"] for entry in everything] == sorted((entry["at"] for entry in everything), reverse=True)
    first = history(client, limit=2)
    assert first["history"] == everything[:2] and first["next_cursor"]
    second = history(client, limit=2, cursor=first["next_cursor"])
    assert second["history"] == everything[2:] and second["next_cursor"] is None

    for query in ("limit=0", "limit=101", "limit=ten", "cursor=not-ours", "cursor=" + "A" * 40):
        answer = client.get("/access/user_ana/history?" + query, headers=ADMIN)
        assert answer.status_code == 400 and answer.json_body["error"]["code"] == "invalid_request", query
    # Another site's admin, an unknown member: empty; a member may not read another's.
    other = history(client, headers=bearer(site="site_b", role="admin", sub="admin_b"))
    assert other == {"history": [], "next_cursor": None}
    assert history(client, path="/access/user_nobody/history") == {"history": [], "next_cursor": None}
    assert client.get("/access/user_ana/history", headers=ANA).status_code == 403


def test_a_disabled_endpoint_shows_on_the_card_after_the_watch_or_a_catch_up_and_is_counted(
        client, studio, work, monkeypatch, emf):
    # The platform's endpoint (the sandbox here delivers nothing by itself).
    endpoint_id = studio.create_webhook_endpoint("https://api.example/webhooks/stripe", connect=True)["id"]
    monkeypatch.setenv("STRIPE_WEBHOOK_ENDPOINT_ID", endpoint_id)
    services.reset()
    endpoint = lambda: client.get("/connectors/stripe", headers=ADMIN).json_body["events"]["endpoint"]  # noqa: E731
    assert endpoint() == "unknown"  # not read yet
    assert watch_webhook_endpoint(scheduled_event("us-east-1"), None)["endpoint"] == "enabled"
    assert endpoint() == "enabled"
    emf.take()

    studio.set_webhook_endpoint_status("disabled", endpoint_id=endpoint_id)
    assert catch_up(scheduled_event("us-east-1"), None)["endpoint"] == "disabled"
    assert endpoint() == "disabled"
    assert {"WebhookEndpointDisabled": 1}.items() <= {k: v for line in emf.counts() for k, v in line.items()}.items()
    # Another site's card says so too: the platform's endpoint is everyone's.
    studio.create_account(id="acct_other", display_name="Other")
    other = bearer(site="site_b", role="admin", sub="admin_b")
    connect(client, studio, "acct_other", headers=other)
    assert client.get("/connectors/stripe", headers=other).json_body["events"]["endpoint"] == "disabled"

    studio.set_webhook_endpoint_status("enabled", endpoint_id=endpoint_id)
    assert watch_webhook_endpoint(scheduled_event("us-east-1"), None)["endpoint"] == "enabled"
    assert endpoint() == "enabled"
    assert {"WebhookEndpointDisabled": 0}.items() <= {k: v for line in emf.counts() for k, v in line.items()}.items()


def test_a_claim_and_a_reassignment_are_in_both_members_histories(client, studio, work):
    assert work.drain()["failed"] == 0
    studio.create_customer(ACCOUNT, email="cy@studio.test", id="cus_cy")  # names no member
    unmatched = studio.create_subscription(ACCOUNT, "cus_cy", ["prod_yoga"], period_end=int(time.time()) + 30 * DAY)
    delivered(client, studio.events[-1])
    cy = bearer(sub="user_cy", role="member", email="cy@studio.test", email_verified=True)
    assert client.get("/access", headers=cy).json_body["entitlements"][0]["member_from"] == "claim"
    [claimed] = history(client, path="/access/history", headers=cy)["history"]
    assert (claimed["from"], claimed["to"]["state"], claimed["cause"]["kind"]) == (None, "active", "claim")
    assert claimed["cause"]["id"].startswith("claim_") and claimed["subscription_id"] == unmatched["id"]

    # A subscription whose metadata names its member, moved to another.
    studio.create_customer(ACCOUNT, email="front-desk@studio.test", id="cus_desk")
    moved = studio.create_subscription(ACCOUNT, "cus_desk", ["prod_yoga"], period_end=int(time.time()) + 30 * DAY,
                                       metadata={"customerhub_user_id": "user_eve"})
    delivered(client, studio.events[-1])
    studio.update_subscription(ACCOUNT, moved["id"], metadata={"customerhub_user_id": "user_dee"})
    delivered(client, studio.events[-1])
    eve = [(e["to"]["state"], e["reason"], e["cause"]["kind"])
           for e in reversed(history(client, path="/access/user_eve/history")["history"])]
    assert eve == [("active", "subscription_active", "stripe_event"),
                   ("expired", "subscription_reassigned", "stripe_event")]
    dee = history(client, path="/access/user_dee/history")["history"]
    assert [(e["from"], e["to"]["state"], e["cause"]["kind"]) for e in dee] == [(None, "active", "stripe_event")]
