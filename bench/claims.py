"""The claim on the member routes: what `GET /access` costs in DynamoDB with
a verified email that has nothing to claim, with one that has something, and
without a verified email (the claim's own cost is the difference). And the
admin's unmatched list with 1,000 ended unmatched records behind one open one.

Targets: one query when there is nothing to claim, nothing without a
verified email; the list reads one page of its index, whatever lies behind it."""
import tempfile
from collections import Counter
from datetime import datetime, timezone

from chalice.test import Client

from tests.helpers import AWS_CALLS, bearer, deliver

from bench.report import Targets, table
from local import moto_transactions
from bench.world import aws, connect_site

ACCOUNT = "acct_bench_claims"
ROUNDS = 20


def dynamodb_calls(http, headers) -> Counter:
    with AWS_CALLS.counting() as calls:
        answer = http.get("/access", headers=headers)
    if answer.status_code != 200:
        raise RuntimeError("GET /access answered %d" % answer.status_code)
    return Counter({op: n for (service, op), n in calls.calls.items() if service == "dynamodb"})


def run(sandbox, targets: Targets) -> str:
    from app import app

    sandbox.reset()
    sandbox.create_account(id=ACCOUNT, display_name="Claims Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_bench_yoga")
    rows = []
    with moto_transactions.installed(), aws(), tempfile.TemporaryDirectory() as project, Client(app, project_dir=project) as client:
        http = client.http
        connect_site(http, sandbox, "site_claims", ACCOUNT)
        plain = bearer(site="site_claims", role="member", sub="user_plain")
        nothing = bearer(site="site_claims", role="member", sub="user_nothing", email="nothing@claims.test",
                         email_verified=True)
        unverified = Counter()
        verified = Counter()
        for _ in range(ROUNDS):
            unverified.update(dynamodb_calls(http, plain))
            verified.update(dynamodb_calls(http, nothing))
        # One with something to claim: an unmatched subscription with their email.
        sandbox.create_customer(ACCOUNT, email="zoe@claims.test", id="cus_bench_zoe")
        sandbox.create_subscription(ACCOUNT, "cus_bench_zoe", ["prod_bench_yoga"])
        if deliver(http, sandbox.events[-1]).status_code != 200:
            raise RuntimeError("the unmatched subscription's delivery failed")
        zoe = bearer(site="site_claims", role="member", sub="user_zoe", email="zoe@claims.test",
                     email_verified=True)
        claiming = dynamodb_calls(http, zoe)
        after = dynamodb_calls(http, zoe)
        listing = unmatched_list_cost(http, sandbox)
    per = lambda counts, n: sum(counts.values()) / n  # noqa: E731
    for what, counts, n in (("no verified email", unverified, ROUNDS),
                            ("verified, nothing to claim", verified, ROUNDS),
                            ("verified, one to claim", claiming, 1),
                            ("verified, claimed already", after, 1)):
        rows.append((what, "%.1f" % per(counts, n),
                     ", ".join("%s %g" % (op, c / n) for op, c in sorted(counts.items()))))
    claim_cost = per(verified, ROUNDS) - per(unverified, ROUNDS)
    extra_queries = (verified["Query"] - unverified["Query"]) / ROUNDS
    targets.at_most("Claim: DynamoDB requests it adds with nothing to claim", claim_cost, 1)
    targets.equal("Claim: the request it adds is a query", "%g Query" % extra_queries, "1 Query",
                  extra_queries == 1)
    listed, counts = listing
    queries = counts["Query"]
    targets.at_most("Unmatched list: queries with 1,000 ended records behind one open one", queries, 1)
    return (table("Member route GET /access: DynamoDB requests per call, the claim included",
                  ("token", "requests", "by operation"), rows, align="lrl") + "\n"
            + table("GET /connectors/stripe/unmatched with %d ended unmatched records behind one open one"
                    % ENDED_RECORDS, ("listed", "requests", "by operation"),
                    [(str(listed), str(sum(counts.values())),
                      ", ".join("%s %d" % (op, c) for op, c in sorted(counts.items())))], align="rrl"))


ENDED_RECORDS = 1000


def unmatched_list_cost(http, sandbox):
    """One open unmatched subscription and ENDED_RECORDS that ended (what a
    site's unmatched partition holds after a while): the list's requests."""
    from chalicelib.models import EntitlementModel

    sandbox.create_customer(ACCOUNT, email="open@claims.test", id="cus_bench_open")
    sandbox.create_subscription(ACCOUNT, "cus_bench_open", ["prod_bench_yoga"])
    if deliver(http, sandbox.events[-1]).status_code != 200:
        raise RuntimeError("the open unmatched subscription's delivery failed")
    now = datetime.now(timezone.utc)
    with EntitlementModel.batch_write() as batch:
        for n in range(ENDED_RECORDS):
            batch.save(EntitlementModel(
                "site_claims#", "sub_bench_ended_%04d" % n, site_id="site_claims", account_id=ACCOUNT,
                customer_id="cus_bench_ended_%d" % n, stripe_status="canceled", state="expired", grants=False,
                reason="subscription_canceled", view_time=1, changed_at=now))
    admin = bearer(site="site_claims", role="admin", sub="admin_bench")
    with AWS_CALLS.counting() as calls:
        answer = http.get("/connectors/stripe/unmatched", headers=admin)
    if answer.status_code != 200:
        raise RuntimeError("GET /connectors/stripe/unmatched answered %d" % answer.status_code)
    return (len(answer.json_body["unmatched"]),
            Counter({op: n for (service, op), n in calls.calls.items() if service == "dynamodb"}))
