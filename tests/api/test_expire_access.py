"""The scheduled sweep ends access whose paid period is over, after asking
Stripe, and only once."""
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from app import expire_access
from chalicelib import services
from chalicelib.clock import utc_now
from chalicelib.connections import ConnectionStore
from chalicelib.entitlements import DUE_SHARDS
from chalicelib.models import EntitlementModel
from chalicelib.stripe_gateway import longest_call_seconds
from chalicelib.sweep import WRITE_SECONDS, Sweep
from chalicelib.webhooks import EventLog, WebhookReceiver
from tests.api.test_connect_lifecycle import ADMIN, connect
from local.scheduled import scheduled_event
from tests.helpers import AWS_CALLS, bearer, deliver

ACCOUNT = "acct_studio"
DAY = 24 * 3600


def delivered(client, event):
    response = deliver(client, event)
    assert response.status_code == 200, response.json_body
    return response


@pytest.fixture
def studio(client, sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    connect(client, sandbox, ACCOUNT)
    sandbox.create_product(ACCOUNT, id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    return sandbox


def member(sandbox, user_id):
    customer = sandbox.create_customer(ACCOUNT, email=user_id + "@studio.test",
                                       metadata={"customerhub_user_id": user_id})
    return customer["id"]


def subscribe(client, sandbox, user_id, period_end, **options):
    """A member's subscription, as its created event told us."""
    subscription = sandbox.create_subscription(ACCOUNT, member(sandbox, user_id), ["prod_yoga"],
                                               period_end=period_end, **options)
    delivered(client, sandbox.events[-1])
    return subscription


def sweep_at(moment, **options):
    return Sweep(ConnectionStore(), services.get_stripe_gateway(), clock=lambda: moment, **options)


def entitlement(user_id, subscription):
    return EntitlementModel.get("site_a#" + user_id, subscription["id"])


def access_of(client, user_id):
    response = client.get("/access/" + user_id, headers=ADMIN)
    assert response.status_code == 200
    return response.json_body["entitlements"]


def at(seconds):
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def test_a_cancellation_at_period_end_ends_access_after_the_period_with_one_event(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end, cancel_at_period_end=True)
    access_events.drain()

    report = sweep_at(at(period_end + 60)).run()

    assert (report.due, report.revoked) == (1, 1)
    item = entitlement("user_ana", subscription)
    assert (item.grants, item.state, item.reason, item.due_at) == (False, "expired", "period_ended", None)
    heard = access_events.drain()
    assert [(e["type"], e["reason"], e["stripe_event_id"]) for e in heard] == [
        ("AccessRevoked", "period_ended", None)]
    assert studio.requests_to("GET", "/v1/subscriptions/" + subscription["id"])


def test_nothing_is_due_before_the_period_ends(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscribe(client, studio, "user_ana", period_end, cancel_at_period_end=True)
    stripe_calls = len(studio.requests)
    report = sweep_at(at(period_end - 60)).run()
    assert (report.due, report.revoked) == (0, 0)
    assert len(studio.requests) == stripe_calls


def test_a_renewal_whose_webhook_was_lost_keeps_access_and_moves_the_date(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end)
    access_events.drain()
    studio.renew_subscription(ACCOUNT, subscription["id"], period_end=period_end + 30 * DAY)  # not delivered

    report = sweep_at(at(period_end + 60)).run()

    assert (report.due, report.kept, report.revoked) == (1, 1, 0)
    item = entitlement("user_ana", subscription)
    assert (item.grants, item.access_until) == (True, at(period_end + 30 * DAY))
    assert item.due_at == period_end + 30 * DAY
    # Access did not change, only its end: nothing to announce.
    assert access_events.drain() == []


def test_an_undone_cancellation_keeps_access(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end, cancel_at_period_end=True)
    access_events.drain()
    # The member changed their mind in the portal and Stripe renewed; neither webhook arrived.
    studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=False)
    studio.renew_subscription(ACCOUNT, subscription["id"])

    report = sweep_at(at(period_end + 60)).run()

    assert report.kept == 1
    entry = access_of(client, "user_ana")[0]
    assert (entry["state"], entry["access"]) == ("active", True)
    assert access_events.drain() == []


def test_a_disconnected_site_loses_access_on_the_stored_date_without_asking_stripe(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end)
    access_events.drain()
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    stripe_calls = len(studio.requests)

    assert sweep_at(at(period_end - 60)).run().revoked == 0
    report = sweep_at(at(period_end + 60)).run()

    assert report.revoked == 1
    assert len(studio.requests) == stripe_calls
    assert entitlement("user_ana", subscription).grants is False
    assert [e["type"] for e in access_events.drain()] == ["AccessRevoked"]


def test_a_site_now_connected_to_another_account_trusts_the_stored_date(client, studio):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end)
    studio.create_account(id="acct_new")
    connect(client, studio, "acct_new")
    stripe_calls = len(studio.requests)
    assert sweep_at(at(period_end + 60)).run().revoked == 1
    assert len(studio.requests) == stripe_calls
    assert entitlement("user_ana", subscription).grants is False


@pytest.mark.parametrize("status", [500, 503])
def test_a_stripe_failure_on_one_entitlement_leaves_it_and_the_rest_are_processed(client, studio, access_events,
                                                                                  status):
    period_end = int(time.time()) + 30 * DAY
    failing = subscribe(client, studio, "user_ana", period_end, cancel_at_period_end=True)
    others = [subscribe(client, studio, "user_%d" % n, period_end, cancel_at_period_end=True) for n in range(3)]
    access_events.drain()
    studio.fail_next("GET", "/v1/subscriptions/" + failing["id"], status, should_retry=False)

    report = sweep_at(at(period_end + 60)).run()

    assert (report.due, report.revoked, report.left) == (4, 3, 1)
    assert entitlement("user_ana", failing).grants is True
    assert all(entitlement("user_%d" % n, s).grants is False for n, s in enumerate(others))
    # The next run takes what was left.
    assert sweep_at(at(period_end + 120)).run().revoked == 1
    assert entitlement("user_ana", failing).grants is False
    assert len([e for e in access_events.drain() if e["type"] == "AccessRevoked"]) == 4


def test_a_stripe_timeout_leaves_the_entitlement_for_the_next_run(client, studio, monkeypatch):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end, cancel_at_period_end=True)
    # Nothing listens there: the connection is refused, as a Stripe outage would look.
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9")
    services.reset()
    report = sweep_at(at(period_end + 60)).run()
    assert (report.left, report.revoked) == (1, 0)
    assert entitlement("user_ana", subscription).grants is True


def test_an_interrupted_sweep_is_finished_by_the_next_run_without_double_events(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    for n in range(5):
        subscribe(client, studio, "user_%d" % n, period_end, cancel_at_period_end=True)
    access_events.drain()

    first = sweep_at(at(period_end + 60), max_per_run=2).run()
    second = sweep_at(at(period_end + 120)).run()
    third = sweep_at(at(period_end + 180)).run()

    assert (first.revoked, first.complete) == (2, False)
    assert (second.revoked, second.complete) == (3, True)
    assert third.due == 0
    revoked = [e["user_id"] for e in access_events.drain() if e["type"] == "AccessRevoked"]
    assert sorted(revoked) == ["user_%d" % n for n in range(5)]


def test_two_sweeps_at_once_revoke_each_entitlement_once(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    for n in range(3):
        subscribe(client, studio, "user_%d" % n, period_end, cancel_at_period_end=True)
    access_events.drain()
    moment = at(period_end + 60)
    other = sweep_at(moment)
    other_reports = []
    ticks = []

    def clock_that_lets_the_other_sweep_run_first():
        # The first tick starts the run; the second comes after the first
        # sweep read the index and asked Stripe, before it writes: the other
        # sweep does all of its work right then.
        ticks.append(moment)
        if len(ticks) == 2:
            other_reports.append(other.run())
        return moment

    report = Sweep(ConnectionStore(), services.get_stripe_gateway(),
                   clock=clock_that_lets_the_other_sweep_run_first).run()

    assert other_reports[0].revoked + report.revoked == 3
    assert report.changed_meanwhile >= 1
    revoked = [e["user_id"] for e in access_events.drain() if e["type"] == "AccessRevoked"]
    assert sorted(revoked) == ["user_0", "user_1", "user_2"]


def test_a_webhook_that_arrives_during_the_sweep_wins(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end, cancel_at_period_end=True)
    access_events.drain()

    def member_renews():
        # Between the sweep's read of Stripe and its write, the member undoes
        # the cancellation, Stripe renews, and the webhook is handled.
        studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=False)
        studio.renew_subscription(ACCOUNT, subscription["id"])
        delivered(client, studio.events[-1])

    studio.before_answering_next("GET", "/v1/subscriptions/" + subscription["id"], member_renews)
    report = sweep_at(at(period_end + 60)).run()

    assert report.changed_meanwhile == 1
    item = entitlement("user_ana", subscription)
    assert (item.grants, item.state) == (True, "active")
    assert access_events.drain() == []


def test_a_webhook_that_asked_stripe_after_the_sweep_did_wins_though_the_sweep_writes_first(
        client, studio, access_events):
    now = int(time.time())
    subscription = studio.create_subscription(ACCOUNT, member(studio, "user_ana"), ["prod_yoga"],
                                              period_start=now - 30 * DAY, period_end=now - 60,
                                              cancel_at_period_end=True)
    # Its delivery was handled while the period still ran.
    receiver = lambda clock=utc_now: WebhookReceiver(  # noqa: E731
        services.get_stripe_gateway(), EventLog(), services.get_connector_service(), ConnectionStore(),
        services.get_view_writer(), clock=clock)
    receiver(lambda: at(now - 120)).handle(studio.events[-1])
    access_events.drain()
    swept = threading.Event()
    webhook = []

    def member_renews():
        # The sweep's read is answered (cancels at a period end now past).
        # Before the answer arrives, the member undoes the cancellation,
        # Stripe renews, and that webhook asks Stripe, its answer arriving
        # only after the sweep has written.
        studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=False)
        studio.renew_subscription(ACCOUNT, subscription["id"], period_end=now + 30 * DAY)
        studio.before_answering_next("GET", "/v1/subscriptions/" + subscription["id"],
                                     lambda: swept.wait(10))
        webhook.append(threading.Thread(target=receiver().handle, args=(studio.events[-1],)))
        webhook[0].start()
        time.sleep(0.2)  # the webhook's read is under way

    studio.before_answering_next("GET", "/v1/subscriptions/" + subscription["id"], member_renews)
    report = Sweep(ConnectionStore(), services.get_stripe_gateway()).run()
    swept.set()
    webhook[0].join(10)

    assert report.revoked == 1
    entry = access_of(client, "user_ana")[0]
    assert (entry["state"], entry["access"]) == ("active", True)
    assert [(e["type"], e["reason"]) for e in access_events.drain()] == [
        ("AccessRevoked", "period_ended"), ("AccessGranted", "subscription_active")]


def test_the_sweep_reads_only_what_is_due_plus_one_page_per_shard(client, studio):
    period_end = int(time.time()) + 30 * DAY
    for n in range(3):
        subscribe(client, studio, "user_due_%d" % n, period_end, cancel_at_period_end=True)
    for n in range(5):
        subscribe(client, studio, "user_later_%d" % n, period_end + 10 * DAY)
    with AWS_CALLS.counting() as calls:
        report = sweep_at(at(period_end + 60)).run()
    assert report.revoked == 3
    assert calls.items_read <= 3 + 1  # the due items, and the site's connection once
    assert calls.calls[("dynamodb", "Query")] <= DUE_SHARDS + 3
    assert calls.calls[("dynamodb", "Scan")] == 0


class FunctionContext:
    """The Lambda context the schedule's invocation carries."""

    def __init__(self, seconds_left):
        self.seconds_left = seconds_left

    def get_remaining_time_in_millis(self):
        return self.seconds_left * 1000


def make_due(studio, subscription, user_id):
    """The period is over, at Stripe and in the stored entitlement."""
    past = int(time.time()) - 60
    studio.update_subscription(ACCOUNT, subscription["id"], period_end=past)
    item = entitlement(user_id, subscription)
    item.access_until, item.due_at = at(past), past
    item.save()


def test_a_run_close_to_its_timeout_takes_nothing_more_and_the_next_run_does(client, studio):
    subscription = subscribe(client, studio, "user_ana", int(time.time()) + 30 * DAY, cancel_at_period_end=True)
    make_due(studio, subscription, "user_ana")
    report = expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=10))
    assert (report["due"], report["complete"]) == (0, False)
    assert entitlement("user_ana", subscription).grants is True
    assert expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=300))["revoked"] == 1


def test_a_run_stops_taking_work_while_one_hung_stripe_read_could_still_outlast_it(client, studio, monkeypatch):
    """At the default 8 s timeout a hung Stripe holds a read about 25.5 s
    (three attempts and the back-off between), the read may first wait 10 s
    for its slot under the ceiling and 3.5 s after 429s, and the write may
    need 5 s more: with 43 s left a run takes nothing. At a 2 s timeout,
    27 s left is enough."""
    assert longest_call_seconds(8) + WRITE_SECONDS == 44
    assert longest_call_seconds(2) + WRITE_SECONDS == 26
    subscription = subscribe(client, studio, "user_ana", int(time.time()) + 30 * DAY, cancel_at_period_end=True)
    make_due(studio, subscription, "user_ana")
    assert expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=43))["due"] == 0
    monkeypatch.setenv("STRIPE_TIMEOUT_SECONDS", "2")
    services.reset()
    assert expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=27))["revoked"] == 1


def test_expire_access_is_the_scheduled_function_and_reports_its_run(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscription = subscribe(client, studio, "user_ana", period_end, cancel_at_period_end=True)
    access_events.drain()
    make_due(studio, subscription, "user_ana")

    report = expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=300))
    assert report["revoked"] == 1
    assert report["complete"] is True
    assert access_of(client, "user_ana")[0]["access"] is False
    assert [e["type"] for e in access_events.drain()] == ["AccessRevoked"]
    assert client.get("/access", headers=bearer(sub="user_ana", role="member")).json_body[
        "entitlements"][0]["state"] == "expired"


def test_a_subscription_that_now_names_another_member_ends_the_old_members_access(client, studio):
    customer = studio.create_customer(ACCOUNT, email="shared@studio.test")["id"]
    period_end = int(time.time()) + 30 * DAY
    subscription = studio.create_subscription(ACCOUNT, customer, ["prod_yoga"], period_end=period_end,
                                              metadata={"customerhub_user_id": "user_ana"})
    delivered(client, studio.events[-1])
    # The owner moved the subscription to another member; Stripe renewed; no webhook came.
    studio.update_subscription(ACCOUNT, subscription["id"], metadata={"customerhub_user_id": "user_bo"})
    studio.renew_subscription(ACCOUNT, subscription["id"])
    report = sweep_at(at(period_end + 60)).run()
    assert report.revoked == 1
    assert entitlement("user_ana", subscription).grants is False


def test_what_stripe_says_of_due_entitlements_is_written_together_each_on_its_own_condition(client, studio):
    period_end = int(time.time()) + 30 * DAY
    ended, renewed = [], []
    for n in range(30):
        subscription = subscribe(client, studio, "user_batch_%02d" % n, period_end, cancel_at_period_end=n % 3 != 0)
        (ended if n % 3 else renewed).append(("user_batch_%02d" % n, subscription))
    for _, subscription in renewed:
        studio.renew_subscription(ACCOUNT, subscription["id"], period_end=period_end + 30 * DAY)  # not delivered
    # One moved to another member at Stripe, its webhook lost.
    moved_user, moved = ended.pop()
    studio.update_subscription(ACCOUNT, moved["id"], metadata={"customerhub_user_id": "user_batch_new"})

    with AWS_CALLS.counting() as calls:
        report = sweep_at(at(period_end + 60)).run()

    assert (report.due, report.revoked, report.kept, report.left) == (30, 20, 10, 0)
    # 30 due: what Stripe said written in batches of 25, each in as few
    # transactions as DynamoDB's 100 items allow (with its access history:
    # 25 views of 3 to 4 items each take two), the connection read once.
    assert calls.calls[("dynamodb", "TransactWriteItems")] == 3
    assert calls.calls[("dynamodb", "GetItem")] == 0
    assert all(entitlement(user, subscription).grants is False for user, subscription in ended)
    assert all(entitlement(user, subscription).access_until == at(period_end + 30 * DAY)
               for user, subscription in renewed)
    assert entitlement(moved_user, moved).grants is False


def test_a_run_while_the_shards_are_still_on_the_queue_puts_none_on_again(client, studio, work, access_events):
    period_end = int(time.time()) + 30 * DAY
    members = ["user_%02d" % n for n in range(6)]
    subscriptions = {user: subscribe(client, studio, user, period_end, cancel_at_period_end=True) for user in members}
    work.drain()  # the connection's import
    for user, subscription in subscriptions.items():
        make_due(studio, subscription, user)
    access_events.drain()
    sweep = Sweep(ConnectionStore(), services.get_stripe_gateway(), max_per_run=2,
                  limits=services.get_rate_limits())
    reads = len(studio.requests_to("GET", "/v1/subscriptions/"))

    assert sweep.run(queue=services.get_work_queue()).fanned_out == 16
    # The next scheduled run comes before the shards' messages are through.
    assert sweep.run(queue=services.get_work_queue()).fanned_out == 0

    assert work.drain() == {"handled": 16, "failed": 0}
    # Each due subscription read from Stripe once, each member's access ended once.
    assert len(studio.requests_to("GET", "/v1/subscriptions/")) - reads == 6
    assert sorted(e["user_id"] for e in access_events.drain() if e["type"] == "AccessRevoked") == members


def test_revocations_handed_over_together_are_announced_ten_to_a_call(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    for n in range(12):
        subscribe(client, studio, "user_%d" % n, period_end, cancel_at_period_end=True)
    access_events.drain()
    assert sweep_at(at(period_end + 60)).run().revoked == 12
    with AWS_CALLS.counting() as calls:
        heard = access_events.drain()
    assert len(heard) == 12
    assert calls.calls[("eventbridge", "PutEvents")] == 2


def test_more_due_than_one_run_takes_fans_out_to_the_work_queue_and_drains_in_parallel(client, studio, work,
                                                                                       access_events):
    period_end = int(time.time()) + 30 * DAY
    members = ["user_%02d" % n for n in range(6)]
    subscriptions = {}
    for user in members:
        subscriptions[user] = subscribe(client, studio, user, period_end, cancel_at_period_end=True)
        make_due(studio, subscriptions[user], user)
    access_events.drain()
    sweep = Sweep(ConnectionStore(), services.get_stripe_gateway(), max_per_run=2)

    report = sweep.run(queue=services.get_work_queue())

    # Every shard on the queue at once; the run itself ends nothing.
    assert (report.due, report.revoked, report.complete, report.fanned_out) == (0, 0, False, 16)
    assert all(entitlement(user, subscriptions[user]).grants for user in members)
    # The shards' messages take it all, each shard once.
    assert work.drain()["failed"] == 0
    assert [access_of(client, user)[0]["access"] for user in members] == [False] * 6
    revoked = [e for e in access_events.drain() if e["type"] == "AccessRevoked"]
    assert sorted(e["user_id"] for e in revoked) == members
    assert Sweep(ConnectionStore(), services.get_stripe_gateway()).run().due == 0

