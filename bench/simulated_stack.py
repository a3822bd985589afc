"""The month start's world (bench/month_start.py): the Stripe sandbox with
Stripe's rate limits and latency, moto, and the connector's functions as
Lambda runs them, all on one simulated clock (bench/simulation.py); the
counts it scales and the helpers its runs share."""
import os
import tempfile
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any, Dict, List

from tests import helpers
from tests.helpers import signed

from bench.simulation import AwsOnTheClock, QueueTrigger, Schedule, SimulatedTime
from bench.world import SIMULATED_AWS, BenchError, aws, configure
from local import moto_queues, moto_transactions
from local.stripe_sandbox import StripeSandbox

CEILING = 20
PER_ACCOUNT = 25
IN_ALL = 100
LATENCY = 0.1
# Lambda's event source mappings (infra/template.yaml: MaximumConcurrency).
EVENTS_CONCURRENCY = 5
WORK_CONCURRENCY = 5
# The table of the ceiling's lanes: its writes are counted apart.
CEILING_TABLE = "stripe-connector-rate-limits"
# 2026-12-01T00:00:00Z
MONTH_START = datetime(2026, 12, 1, tzinfo=timezone.utc)
T0 = MONTH_START.timestamp()
DAY = 24 * 3600
WEBHOOK = "/webhooks/stripe"


def scale() -> float:
    value = float(os.environ.get("MONTH_START_SCALE", "0.1"))
    if not 0 < value <= 1:
        raise BenchError("MONTH_START_SCALE is a fraction in (0, 1]")
    return value


def scaled(count: int) -> int:
    return max(1, int(count * scale()))


class Simulation:
    """The sandbox, moto and the connector's functions on one simulated clock."""

    def __init__(self, start: float):
        from chalicelib import clock

        self.time = SimulatedTime(start)
        self.aws_clock = AwsOnTheClock(self.time)
        self.sandbox = StripeSandbox(secret_key=helpers.SECRET_KEY, client_id=helpers.CLIENT_ID,
                                     clock=self.time.time, sleep=self.time.sleep)
        self._clock = clock
        self._stack = ExitStack()
        self.triggers: Dict[str, QueueTrigger] = {}
        self.schedules: List[Schedule] = []

    def __enter__(self) -> "Simulation":
        import boto3
        from chalice.test import Client

        from app import app, stripe_events, sync_worker
        from chalicelib import services
        from chalicelib.queues import EVENTS_QUEUE, SYNC_QUEUE

        self.sandbox.start()
        self._stack.callback(self.sandbox.stop)
        configure(self.sandbox)
        os.environ["STRIPE_REQUESTS_PER_SECOND"] = str(CEILING)
        services.reset()
        previous = self._clock.use(self.time)
        self._stack.callback(self._clock.use, previous)
        SIMULATED_AWS.target = self.aws_clock
        self._stack.callback(setattr, SIMULATED_AWS, "target", None)
        self._stack.enter_context(moto_transactions.installed())
        self._stack.enter_context(moto_queues.installed())
        self._stack.enter_context(aws())
        self.http = self._stack.enter_context(Client(app, project_dir=tempfile.mkdtemp())).http
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.triggers["events"] = QueueTrigger(self.time, self.aws_clock, self.sqs, EVENTS_QUEUE, stripe_events,
                                               EVENTS_CONCURRENCY, timeout=60)
        self.triggers["work"] = QueueTrigger(self.time, self.aws_clock, self.sqs, SYNC_QUEUE, sync_worker,
                                             WORK_CONCURRENCY, timeout=300)
        self.sandbox.limit_rates(PER_ACCOUNT, IN_ALL)
        self.sandbox.add_latency(LATENCY)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for schedule in self.schedules:
            schedule.stop()
        for trigger in self.triggers.values():
            trigger.stop()
        self._stack.close()
        for trigger in self.triggers.values():
            trigger.join()

    def start(self) -> None:
        for trigger in self.triggers.values():
            trigger.start()

    def schedule(self, name: str, handler, every: float, timeout: float, first: float) -> Schedule:
        schedule = Schedule(self.time, name, handler, every, timeout, first).start()
        self.schedules.append(schedule)
        return schedule

    def until(self, moment: float) -> None:
        self.time.sleep(max(0.0, moment - self.time.time()))

    def settled(self) -> bool:
        for trigger in self.triggers.values():
            attributes = self.sqs.get_queue_attributes(QueueUrl=trigger.url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            if int(attributes["ApproximateNumberOfMessages"]) or int(
                    attributes["ApproximateNumberOfMessagesNotVisible"]) or not trigger.idle:
                return False
        return True

    def settle(self, deadline: float, step: float = 1.0) -> float:
        """Wait until nothing is queued or being handled; the moment it was so."""
        while self.time.time() < deadline:
            if self.settled():
                return self.time.time()
            self.time.sleep(step)
        raise BenchError("Still busy at %s" % datetime.fromtimestamp(deadline, timezone.utc))

    def post(self, event: Dict[str, Any]) -> int:
        payload, headers = signed(event, timestamp=int(self.time.time()))
        return self.http.post(WEBHOOK, headers=headers, body=payload).status_code


def connected_account(sandbox: StripeSandbox, account_id: str, name: str) -> None:
    """An account at Stripe the platform holds a grant for (no site yet)."""
    from chalicelib import services

    sandbox.create_account(id=account_id, display_name=name)
    services.get_stripe_gateway().exchange_code(sandbox.issue_code(account_id))


def seed_connection(site_id: str, account_id: str, name: str, now: datetime) -> None:
    from chalicelib.connections import CONNECTED
    from chalicelib.models import ConnectionModel

    ConnectionModel(site_id, status=CONNECTED, account_id=account_id, last_account_id=account_id,
                    display_name=name, livemode=False, connected_at=now, connected_by="admin_" + site_id).save()


def dynamodb_without_leases(calls) -> int:
    return calls.of("dynamodb") - calls.on(CEILING_TABLE)
