"""make soak: a bounded load and correctness run against the local stack.

Starts `python -m local.run` on free loopback ports with a Stripe sandbox
that sends no webhooks, connects the local site, and lives through two
phases of a studio's subscriptions at Stripe while eight senders deliver the
events, shuffled, a fifth of them duplicates; between the phases, once the
short periods are over, `make sweep` runs once. Then it compares every
member's access with the access rules applied to Stripe's final
subscriptions, and the announcements on EventBridge with the flips of the
stored entitlements (see soak/verdict.py for both definitions).

Every delivery is answered once its event is queued: the soak waits for the
events queue to be handled before the sweep and before it reads back.

Exit 0 when there is no mismatch, no 5xx (nor a delivery without an answer),
no event in the events' dead-letter queue, the announcements alternate and
end on the final access, and the notifications equal the flips; 1
otherwise; 2 when the run itself failed."""
import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import requests  # noqa: E402

from soak import verdict  # noqa: E402
from soak.feed import Feed, PhaseReport  # noqa: E402
from soak.senders import DUPLICATES, FIRST, LATE, RETRY, STALE, Senders, Sent  # noqa: E402
from soak.stack import AccessEventsQueue, LocalStack, StackError, start_sandbox  # noqa: E402
from soak.stripe_life import StripeLife  # noqa: E402

SHOWN = 10  # problems listed of each kind


@dataclass
class Run:
    """What one run saw."""
    args: argparse.Namespace
    life: StripeLife
    stack: LocalStack
    phases: List[PhaseReport]
    sweep: Dict[str, object]
    sent: List[Sent]
    images: list
    heard: List[dict]
    late_answers: int
    expected: Dict[verdict.Pair, verdict.Holding]
    observed: Dict[verdict.Pair, verdict.Holding]
    seconds: float
    # How long handling ran on after each phase's last acknowledgement.
    handled_after: List[float]
    dead_letters: int
    handling_retries: int


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1124)
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--subscriptions", type=int, default=700)
    parser.add_argument("--senders", type=int, default=8)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="soak-")
    sandbox = start_sandbox()
    stack = LocalStack(sandbox, os.path.join(workdir, "stack.log"))
    try:
        run = soak(args, stack)
    except (StackError, requests.RequestException) as exc:
        traceback.print_exc()
        print("\nThe soak could not run: %s\nThe stack's log: %s" % (exc, stack.log_path))
        return 2
    finally:
        stack.stop()
        sandbox.stop()
    status = report(run)
    if status == 0:
        # The stack's log is kept only when there is something to look for in it.
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def soak(args: argparse.Namespace, stack: LocalStack) -> Run:
    started = time.monotonic()
    senders = Senders(stack.api_url + "/webhooks/stripe", stack.webhook_secret, threads=args.senders)
    inbox = None
    try:
        say("starting the local stack (python -m local.run) on %s, AWS %s, Stripe sandbox %s"
            % (stack.api_url, stack.aws_url, stack.sandbox.url))
        stack.start()
        inbox = AccessEventsQueue(stack).start()
        stack.connect()
        rng = random.Random(args.seed)
        life = StripeLife(stack.sandbox, stack.account_id, rng)
        life.open_shop(args.members)
        senders.start()
        feed = Feed(stack.sandbox, stack.account_id, senders, rng, unhandled=stack.events_unhandled,
                    handled=stack.event_handled)

        say("phase 1: %d subscriptions for %d members" % (args.subscriptions, args.members))
        one = feed.run(life, life.phase_one(args.subscriptions), phase=1)
        if not senders.wait():
            raise StackError("phase 1's deliveries did not finish")
        handled_after = [stack.wait_for_events()]
        wait = life.short_ends_at + 1 - time.time()
        if wait > 0:
            say("waiting %.0f s for the short periods to end" % wait)
            time.sleep(wait)
        say("sweep (python -m local.sweep)")
        sweep = stack.run_sweep()

        say("phase 2: more changes on the same subscriptions, phase 1's late and stale deliveries among them")
        two = feed.run(life, life.phase_two(), phase=2)
        if not senders.wait():
            raise StackError("phase 2's deliveries did not finish")
        handled_after.append(stack.wait_for_events())

        say("reading back: the stored views, the announcements, every member's access")
        images = stack.stream_images()
        flips = sum(verdict.flips_of(images).values())
        say("%d stored writes, %d flips; waiting for the announcements" % (len(images), flips))
        inbox.settle(enough=flips)
        say("%d announcements heard; comparing every member's access" % len(inbox.received))
        expected = verdict.expected_holdings(stack.site_id, final_subscriptions(stack), datetime.now(timezone.utc))
        observed = observed_holdings(stack, life)
        return Run(args, life, stack, [one, two], sweep, senders.sent, images, inbox.received, feed.late_answers,
                   expected, observed, time.monotonic() - started, handled_after, stack.events_queued()[1],
                   stack.handling_retries())
    finally:
        senders.stop()
        if inbox is not None:
            inbox.stop()


def report(run: Run) -> int:
    """Print the figures and what went wrong; the exit status."""
    found = verdict.mismatches(run.expected, run.observed)
    flips = verdict.flips_of(run.images)
    announcements = verdict.announcements_of(run.heard)
    notifications = {pair: len(seen) for pair, seen in announcements.by_pair.items()}
    differences = verdict.count_differences(notifications, flips)
    out_of_order = verdict.sequence_errors(announcements, run.expected)
    one, two = run.phases
    statuses = classes(run.sent)
    unanswered = unacknowledged(one.events + two.events, run.sent)
    kinds = Counter(s.kind for s in run.sent)
    duplicates = sum(kinds[kind] for kind in DUPLICATES)
    flip_total = sum(flips.values())

    print()
    print("Soak: %d members, %d subscriptions, %d products, seed %d; %d senders; %s" % (
        run.args.members, run.args.subscriptions, len(run.life.products), run.args.seed, run.args.senders,
        run.stack.api_url))
    print("  phase 1            %d Stripe steps, %d events" % (one.applied, len(one.events)))
    print("  sweep              %s" % ", ".join("%s %s" % kv for kv in run.sweep.items()))
    print("  phase 2            %d Stripe steps, %d events; %d answers from Stripe arrived after a later change's"
          " delivery" % (two.applied, len(two.events), run.late_answers))
    if run.life.skipped:
        print("  steps skipped      %d (%s)" % (len(run.life.skipped), "; ".join(run.life.skipped[:3])))
    print("  deliveries         %d: %d first (%d of them late), %d duplicates (%.1f%%: %d stale), %d retries" % (
        len(run.sent), kinds[FIRST] + kinds[LATE], kinds[LATE], duplicates,
        100.0 * duplicates / max(len(run.sent), 1), kinds[STALE], kinds[RETRY]))
    print("  answers            2xx %d, 4xx %d, 5xx %d, none %d" % (
        statuses["2xx"], statuses["4xx"], statuses["5xx"], statuses["none"]))
    print("  latency            p50 %s, p99 %s, max %s" % latency(run.sent))
    print("  events queue       emptied %s after each phase's last acknowledgement; %d handling retries, "
          "%d dead letters" % (" and ".join("%.1f s" % t for t in run.handled_after), run.handling_retries,
                               run.dead_letters))
    print("  events never 2xx   %d" % len(unanswered))
    print("  members checked    %d (%d member-product pairs)" % (
        len(run.life.members), len(set(run.expected) | set(run.observed))))
    print("  mismatches         %d" % len(found))
    print("  announcements      %d received, %d repeats of a change_id" % (
        announcements.received, announcements.repeats))
    print("  notifications      %d (granted %d, revoked %d)" % (
        announcements.notifications, count_of(announcements, verdict.GRANTED),
        count_of(announcements, verdict.REVOKED)))
    print("  flips              %d (pairs whose count differs: %d; sequence errors: %d)" % (
        flip_total, len(differences), len(out_of_order)))
    print("  duration           %.1f s" % run.seconds)

    differing = sorted(p for p in set(notifications) | set(flips) if notifications.get(p, 0) != flips.get(p, 0))
    for pair in differing[:SHOWN]:
        print("\nwhat was stored and heard for %s/%s %s:" % pair)
        for line in verdict.history_of(run.images, pair):
            print("  " + line)
        for message in announcements.by_pair.get(pair, []):
            print("  heard %s %s (%s, event %s)" % (message["type"], message["subscription_id"], message["reason"],
                                                  message["stripe_event_id"]))
    for title, problems in (("mismatches", [str(m) for m in found]), ("events never acknowledged", unanswered),
                            ("notifications against flips", differences),
                            ("announcement sequences", out_of_order)):
        if problems:
            print("\n%s (%d):" % (title, len(problems)))
            for problem in problems[:SHOWN]:
                print("  " + problem)

    failures = []
    if found:
        failures.append("%d mismatches" % len(found))
    if statuses["5xx"] or statuses["none"]:
        failures.append("%d answers 5xx or none" % (statuses["5xx"] + statuses["none"]))
    if run.dead_letters:
        failures.append("%d events in the dead-letter queue" % run.dead_letters)
    if announcements.notifications != flip_total or differences:
        failures.append("%d notifications against %d flips" % (announcements.notifications, flip_total))
    if out_of_order:
        failures.append("%d announcement sequences wrong" % len(out_of_order))
    if failures:
        print("\nFAIL: %s. The stack's log: %s" % ("; ".join(failures), run.stack.log_path))
        return 1
    print("\nPASS")
    return 0


STARTED = time.monotonic()


def say(message: str) -> None:
    print("soak %5.1f s: %s" % (time.monotonic() - STARTED, message), file=sys.stderr, flush=True)


def final_subscriptions(stack: LocalStack) -> List[dict]:
    """Every subscription on the account as Stripe has it now, customer and
    products expanded, through the sandbox's API. Stripe refuses expansions
    deeper than four levels, so a list cannot expand data.items.data.price.product:
    the products are read once each and filled in."""
    found: List[dict] = []
    params = [("status", "all"), ("limit", "100"), ("expand[]", "data.customer")]
    headers = {"Authorization": "Bearer " + stack.sandbox.secret_key, "Stripe-Account": stack.account_id}
    products: Dict[str, dict] = {}
    with requests.Session() as session:
        def get(path: str, query=None) -> dict:
            answer = session.get(stack.sandbox.url + path, params=query, headers=headers, timeout=30)
            answer.raise_for_status()
            return answer.json()

        while True:
            page = get("/v1/subscriptions", params)
            found.extend(page["data"])
            if not page["has_more"]:
                break
            params = [p for p in params if p[0] != "starting_after"] + [("starting_after", page["data"][-1]["id"])]
        for subscription in found:
            for item in subscription["items"]["data"]:
                product_id = item["price"]["product"]
                if product_id not in products:
                    products[product_id] = get("/v1/products/" + product_id)
                item["price"]["product"] = products[product_id]
    return found


def observed_holdings(stack: LocalStack, life: StripeLife) -> Dict[verdict.Pair, verdict.Holding]:
    """GET /access/{user_id} for every member, four at a time."""
    local = threading.local()

    def read(user_id: str) -> Dict[verdict.Pair, verdict.Holding]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return verdict.observed_holdings(stack.site_id, user_id, stack.access_of(user_id, local.session))

    found: Dict[verdict.Pair, verdict.Holding] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for holdings in pool.map(read, [member.user_id for member in life.members]):
            found.update(holdings)
    return found


def classes(sent) -> Dict[str, int]:
    counts = {"2xx": 0, "4xx": 0, "5xx": 0, "none": 0, "other": 0}
    for s in sent:
        if s.status is None:
            counts["none"] += 1
        else:
            key = "%dxx" % (s.status // 100)
            counts[key if key in counts else "other"] += 1
    return counts


def latency(sent):
    times = sorted(s.seconds for s in sent)
    if not times:
        return ("-", "-", "-")
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return tuple("%.0f ms" % (t * 1000) for t in (statistics.median(times), p99, times[-1]))


def unacknowledged(events, sent) -> List[str]:
    acknowledged = {s.event_id for s in sent if s.status is not None and 200 <= s.status < 300}
    return ["%s %s" % (e["id"], e["type"]) for e in events if e["id"] not in acknowledged]


def count_of(announcements: verdict.Announcements, kind: str) -> int:
    return sum(1 for seen in announcements.by_pair.values() for m in seen if m["type"] == kind)


if __name__ == "__main__":
    sys.exit(main())
