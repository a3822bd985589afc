"""A simulated clock that drives the connector's own code, and the parts of
AWS that decide when that code runs: Lambda's pollers of an SQS queue and
its schedules.

The clock moves only when every thread working under it waits: a Stripe
round trip (the sandbox's latency), a slot of the Stripe ceiling, a back-off
after a 429, an AWS request's latency, a poller with nothing to receive.
The time the code itself takes on this machine does not count, so an hour
of a month start runs in minutes, and what it measures is what the
connector asks for and waits on, not how fast this machine is.

Threads that work under the clock are counted (`working()`). A thread
blocked on anything but the clock must be waiting for one that is not (a
request to the sandbox waits for the sandbox's handler, which sleeps its
latency on the clock in the requester's stead): the clock counts a sleeper
as one thread fewer working, whoever it is."""
import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional

from local.queues import sqs_record

logger = logging.getLogger(__name__)

# Real seconds with the clock standing still and some thread working before
# the simulation is taken as stuck (a thread blocked outside the clock).
STUCK_AFTER_SECONDS = 120.0


class Stuck(Exception):
    """The simulated clock could not move: a thread waits outside it."""


class SimulatedTime:
    """A process's time source (chalicelib.clock.use): `time()` and `sleep()`."""

    def __init__(self, start: float):
        self._now = float(start)
        self._condition = threading.Condition()
        self._working = 0
        self._sleepers: List[Any] = []
        self._order = itertools.count()
        self.moves = 0

    def time(self) -> float:
        return self._now

    def sleep(self, seconds: float, signal: Optional[List[Any]] = None) -> None:
        """Wait `seconds` of simulated time; with `signal`, until `notify`
        of it if that comes sooner."""
        woken = [False]
        with self._condition:
            heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._order), woken))
            if signal is not None:
                signal.append(woken)
            self._working -= 1
            self._move()
            while not woken[0]:
                if not self._condition.wait(timeout=STUCK_AFTER_SECONDS) and not woken[0]:
                    logger.error("The simulated clock has not moved for %d s: %d threads working outside it",
                                 STUCK_AFTER_SECONDS, self._working)

    def notify(self, signal: List[Any]) -> None:
        """Wake at once whoever sleeps on `signal`."""
        with self._condition:
            for woken in signal:
                if not woken[0]:
                    woken[0] = True
                    self._working += 1
            signal.clear()
            self._condition.notify_all()

    def enlist(self) -> None:
        """Count a thread about to start as working, before it runs: the
        clock does not move past its first step meanwhile. It then enters
        `working(enlisted=True)`."""
        with self._condition:
            self._working += 1

    @contextmanager
    def working(self, enlisted: bool = False) -> Iterator[None]:
        """The calling thread works under this clock until the block ends."""
        if not enlisted:
            self.enlist()
        try:
            yield
        finally:
            with self._condition:
                self._working -= 1
                self._move()

    def _move(self) -> None:
        """With the lock: when nothing works, on to the next wake-up."""
        while self._sleepers and self._sleepers[0][2][0]:
            heapq.heappop(self._sleepers)  # woken early by a notify
        if self._working > 0 or not self._sleepers:
            return
        moment = self._sleepers[0][0]
        if moment > self._now:
            self._now = moment
            self.moves += 1
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken[0]:
                woken[0] = True
                self._working += 1
        self._condition.notify_all()


class AwsOnTheClock:
    """What AWS does on the simulated clock, through botocore's hooks (world.py
    installs them on every session): each request takes its service's
    latency, and SQS stamps a message with the simulated moment it was sent
    (moto stamps the machine's)."""

    LATENCY = {"dynamodb": 0.005, "sqs": 0.008, "events": 0.015}

    def __init__(self, time_source: SimulatedTime):
        self.time = time_source
        self.sent_at: Dict[str, float] = {}
        # Instances of the queues' pollers waiting for a message.
        self.listening: List[Any] = []
        self._lock = threading.Lock()

    def before_call(self, event_name: str) -> None:
        service = event_name.split(".")[1]
        latency = self.LATENCY.get(service)
        if latency:
            self.time.sleep(latency)

    def after_call(self, event_name: str, parsed: Dict[str, Any]) -> None:
        if not event_name.startswith("after-call.sqs.SendMessage"):
            return
        ids = [parsed.get("MessageId")] + [entry.get("MessageId") for entry in parsed.get("Successful") or []]
        now = self.time.time()
        with self._lock:
            for message_id in ids:
                if message_id:
                    self.sent_at[message_id] = now
        self.time.notify(self.listening)

    def sent(self, message_id: str) -> Optional[float]:
        with self._lock:
            return self.sent_at.get(message_id)


class Invocation:
    """What Lambda's context gives the function, on the simulated clock."""

    def __init__(self, time_source: SimulatedTime, timeout: float):
        self.aws_request_id = str(uuid.uuid4())
        self._time = time_source
        self._deadline = time_source.time() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._time.time()) * 1000))


class QueueTrigger:
    """Lambda's event source mapping for one queue: up to `concurrency`
    instances, each receiving one message at a time (batch size 1), calling
    the function, deleting the message when it returned, and leaving it for
    the visibility timeout when it raised; after `max_receives` tries SQS
    moves it to the dead-letter queue (moto does, by the queue's redrive
    policy). Each instance builds its own services (services.instance)."""

    # How long an instance with nothing received waits before asking again
    # (Lambda long-polls: it hears of a message as soon as one is sent).
    IDLE_POLL_SECONDS = 20.0
    # SQS is asked to hide a received message for longer than the run: the
    # simulated visibility timeout decides when it is seen again.
    HIDDEN_SECONDS = 43_200

    def __init__(self, time_source: SimulatedTime, aws: AwsOnTheClock, sqs: Any, queue_name: str,
                 handler: Callable[[Dict[str, Any], Any], Any], concurrency: int, timeout: float,
                 visibility_timeout: float = 30.0):
        self.time = time_source
        self.aws = aws
        self.sqs = sqs
        self.name = queue_name
        self.url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.handler = handler
        self.concurrency = concurrency
        self.timeout = timeout
        self.visibility_timeout = visibility_timeout
        self.handled = 0
        self.failed = 0
        self.busy = 0
        self.handled_at: Dict[str, float] = {}
        self.last_handled_at: Optional[float] = None
        self.results: List[Any] = []
        self._hidden: List[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    def start(self) -> "QueueTrigger":
        from chalicelib import services

        def instance(number: int) -> None:
            with self.time.working(enlisted=True), services.instance("%s-%d" % (self.name, number)):
                while not self._stop.is_set():
                    try:
                        if not self._poll_once():
                            self.time.sleep(self._idle_wait(), signal=self.aws.listening)
                    except Exception:
                        logger.exception("Polling %s failed", self.name)
                        self.time.sleep(1.0)

        for number in range(self.concurrency):
            thread = threading.Thread(target=instance, args=(number,), name="%s-%d" % (self.name, number),
                                      daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            self.time.enlist()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)

    def _idle_wait(self) -> float:
        """Until a message is sent, or one that failed is due to be seen again."""
        with self._lock:
            if self._hidden:
                return max(0.0, min(self.IDLE_POLL_SECONDS, self._hidden[0][0] - self.time.time()))
        return self.IDLE_POLL_SECONDS

    @property
    def idle(self) -> bool:
        with self._lock:
            return self.busy == 0 and not self._hidden

    def _poll_once(self) -> bool:
        self._show_due()
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, AttributeNames=["All"],
                                          MessageAttributeNames=["All"], VisibilityTimeout=self.HIDDEN_SECONDS)
        messages = answer.get("Messages") or []
        if not messages:
            return False
        message = messages[0]
        with self._lock:
            self.busy += 1
        try:
            result = self.handler({"Records": [self._record(message)]}, Invocation(self.time, self.timeout))
        except Exception:
            logger.info("%s: message %s failed; it comes again after %d s", self.name, message["MessageId"],
                        self.visibility_timeout, exc_info=True)
            with self._lock:
                self.failed += 1
                heapq.heappush(self._hidden, (self.time.time() + self.visibility_timeout, message["ReceiptHandle"]))
        else:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            with self._lock:
                self.handled += 1
                self.handled_at[message["MessageId"]] = self.last_handled_at = self.time.time()
                if result is not None:
                    self.results.append(result)
        finally:
            with self._lock:
                self.busy -= 1
        return True

    def _show_due(self) -> None:
        due = []
        with self._lock:
            while self._hidden and self._hidden[0][0] <= self.time.time():
                due.append(heapq.heappop(self._hidden)[1])
        for receipt_handle in due:
            self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=0)

    def _record(self, message: Dict[str, Any]) -> Dict[str, Any]:
        attributes = dict(message.get("Attributes") or {})
        sent = self.aws.sent(message["MessageId"])
        if sent is not None:
            attributes["SentTimestamp"] = str(int(sent * 1000))
        return sqs_record(message, self.arn, attributes)


class Schedule:
    """An EventBridge schedule: the function every `every` seconds, from
    `first`, each run in an instance of its own."""

    def __init__(self, time_source: SimulatedTime, name: str, handler: Callable[[Dict[str, Any], Any], Any],
                 every: float, timeout: float, first: Optional[float] = None):
        self.time = time_source
        self.name = name
        self.handler = handler
        self.every = every
        self.timeout = timeout
        self.first = time_source.time() if first is None else first
        # (started, ended, what it returned or raised) of every run.
        self.runs: List[Any] = []
        self.running = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Schedule":
        from chalicelib import services

        def loop() -> None:
            with self.time.working(enlisted=True):
                self.time.sleep(max(0.0, self.first - self.time.time()))
                count = 0
                while not self._stop.is_set():
                    started = self.time.time()
                    self.running = 1
                    with services.instance("%s-%d" % (self.name, count)):
                        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                                 "source": "aws.events", "account": "123456789012", "region": "us-east-1",
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                                 "resources": ["arn:aws:events:us-east-1:123456789012:rule/%s" % self.name],
                                 "detail": {}}
                        try:
                            result = self.handler(event, Invocation(self.time, self.timeout))
                        except Exception as exc:
                            logger.exception("%s failed", self.name)
                            result = exc
                    self.runs.append((started, self.time.time(), result))
                    self.running = 0
                    count += 1
                    self.time.sleep(max(0.0, started + self.every - self.time.time()))

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self.time.enlist()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


def peak_per_second(moments: List[float]) -> int:
    """The most requests within any one second (a sliding window)."""
    ordered = sorted(moments)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - 1:
            start += 1
        most = max(most, end - start + 1)
    return most


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
