"""What the connector tells its operators: log lines that name the site, the
Stripe account and the event they concern, and counts in CloudWatch's
embedded metric format (EMF).

The modules keep logging with `logging.getLogger(__name__)`. What a line is
about is bound here for the invocation (`bind`) and added to every record
by a filter on the handler, so a line logged deep inside a service carries
the site and event of the request that led there. The keys live in a
context variable: concurrent requests of the local server do not mix them.

In Lambda the `chalicelib` loggers write JSON through aws-lambda-powertools'
formatter; elsewhere the host's handlers (pytest's, the local stack's
console) are left alone. Either way nothing that authenticates anyone
leaves in a log line: no code path logs one, and what would look like one
is masked on the way out as well.

Powertools itself is imported only when a JSON log or a metric is written:
importing this module costs a cold start nothing."""
import logging
import re
import sys
from collections import Counter
from contextvars import ContextVar
from typing import IO, Dict, Mapping, Optional

SERVICE = "stripe-connector"
NAMESPACE = "CustomerHub/StripeConnector"
JSON = "json"
PLAIN = "plain"

# The keys a line may carry, in the order a plain line shows them.
KEYS = ("function_request_id", "correlation_id", "route", "site_id", "user_id", "stripe_account",
        "stripe_event_id", "stripe_event_type", "import_id", "subscription_id")
# Ids are bounded where they are read (tokens, Stripe ids); this bounds the rest.
MAX_VALUE_LENGTH = 256

_keys: ContextVar[Mapping[str, str]] = ContextVar("observed_keys", default={})

# Shapes of what authenticates someone. A line holding one is a bug; these
# are masked all the same, whatever logged them.
SECRET_SHAPES = (
    r"\b[sr]k_(?:test|live)_[A-Za-z0-9]+",           # Stripe API keys
    r"\bwhsec_[A-Za-z0-9]+",                         # webhook signing secrets
    r"\bac_[A-Za-z0-9]+",                            # Stripe OAuth authorization codes
    r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",  # JWTs (CustomerHub tokens)
    r"(?i:\bbearer)\s+[^\s\"',;]+",                  # an Authorization header's value
    r"\bv[01]=[0-9a-fA-F]{16,}",                     # Stripe-Signature's signatures
)
MASK = "[redacted]"
_secret_values: set = set()
_secrets = re.compile("|".join(SECRET_SHAPES))

# Libraries whose DEBUG lines carry request bodies and headers (an OAuth
# code posted to Stripe, items written to DynamoDB): never below INFO.
CHATTY_LIBRARIES = ("stripe", "botocore", "boto3", "urllib3", "pynamodb")


def bind(**keys: object) -> None:
    """Add keys to every line logged from here to the end of the invocation
    (None removes a key)."""
    current = dict(_keys.get())
    for name, value in keys.items():
        if name not in KEYS:
            raise ValueError("Unknown log key %r" % name)
        if value is None:
            current.pop(name, None)
        else:
            current[name] = str(value)[:MAX_VALUE_LENGTH]
    _keys.set(current)


def unbind(*names: str) -> None:
    bind(**{name: None for name in names})


def bound() -> Dict[str, str]:
    return dict(_keys.get())


def start_invocation(context: object = None, **keys: object) -> None:
    """A new invocation: the previous one's keys forgotten, Lambda's request
    id bound when there is a Lambda context."""
    _keys.set({})
    request_id = getattr(context, "aws_request_id", None)
    bind(function_request_id=request_id if isinstance(request_id, str) and request_id else None, **keys)


def register_secret(value: Optional[str]) -> None:
    """Mask this exact value too (the configured secrets: any shape)."""
    global _secrets
    if value and len(value) >= 8 and value not in _secret_values:
        _secret_values.add(value)
        literal = sorted((re.escape(v) for v in _secret_values), key=len, reverse=True)
        _secrets = re.compile("|".join(literal + list(SECRET_SHAPES)))


def redact(text: str) -> str:
    return _secrets.sub(MASK, text)


class ContextKeys(logging.Filter):
    """Puts the invocation's keys on each record a handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _keys.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class PlainFormatter(logging.Formatter):
    """One line for a person: the message, then the keys, masked."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # Lambda's request id is for finding a line among others in CloudWatch;
        # on a console of one's own it is only noise.
        keys = " ".join("%s=%s" % (name, getattr(record, name)) for name in KEYS
                        if name != "function_request_id" and hasattr(record, name))
        if keys:
            head, newline, rest = line.partition("\n")
            line = "%s  [%s]%s%s" % (head, keys, newline, rest)
        return redact(line)


def hold_chatty_libraries() -> None:
    # Pinned at what they inherit now, INFO at the least: a root logger
    # turned to DEBUG later (a debugging session) does not bring them along.
    for name in CHATTY_LIBRARIES:
        library = logging.getLogger(name)
        library.setLevel(max(logging.INFO, library.getEffectiveLevel()))


def configure_logging(log_format: Optional[str], stream: Optional[IO[str]] = None) -> Optional[logging.Handler]:
    """JSON lines from the `chalicelib` loggers (Lambda), or plain ones on a
    console of our own (the local stack), or nothing: the host's handlers
    (pytest's) are left as they are. Returns the handler installed."""
    logging.getLogger("chalicelib").setLevel(logging.INFO)
    if log_format is None:
        return None
    hold_chatty_libraries()
    if log_format == PLAIN:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(PlainFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.addFilter(ContextKeys())
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        return handler
    if log_format != JSON:
        raise ValueError("Unknown log format %r" % log_format)
    return _json_logging(stream)


def _json_logging(stream: Optional[IO[str]]) -> logging.Handler:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    class MaskingFormatter(LambdaPowertoolsFormatter):
        def serialize(self, log) -> str:
            return redact(super().serialize(log))

    # The service's own logger (Chalice's app.log) takes powertools' handler;
    # `chalicelib` gets a copy of it, so that our modules' loggers write the
    # same JSON. The level comes from POWERTOOLS_LOG_LEVEL, or Lambda's
    # AWS_LAMBDA_LOG_LEVEL, else INFO.
    service = Logger(service=SERVICE, stream=stream or sys.stdout,
                     logger_formatter=MaskingFormatter(utc=True, use_rfc3339=True))
    service.registered_handler.addFilter(ContextKeys())
    copy_config_to_registered_loggers(source_logger=service, include={"chalicelib"})
    return service.registered_handler


# Metric names. Infra alarms on SweepLeft.
WEBHOOK_QUEUED = "WebhookQueued"        # acknowledged: on the events queue
WEBHOOK_HANDLED = "WebhookHandled"
WEBHOOK_IGNORED = "WebhookIgnored"
WEBHOOK_DUPLICATE = "WebhookDuplicate"
# Handled without a read of Stripe: the subscription was read after the event reached the connector.
WEBHOOK_COALESCED = "WebhookCoalesced"
WEBHOOK_FAILED = "WebhookFailed"        # answered 500, not queued: Stripe delivers it again
WEBHOOK_HANDLING_FAILED = "WebhookHandlingFailed"  # handling a queued event failed: the queue gives it again
WEBHOOK_REJECTED = "WebhookRejected"    # a bad signature, body or size: 400 or 413
ACCESS_GRANTED = "AccessGranted"
ACCESS_REVOKED = "AccessRevoked"
SWEEP_DUE = "SweepDue"
SWEEP_REVOKED = "SweepRevoked"
SWEEP_KEPT = "SweepKept"
SWEEP_LEFT = "SweepLeft"                # due, but Stripe could not be asked: the next run tries again
IMPORT_PAGES = "ImportPages"
IMPORT_SUBSCRIPTIONS = "ImportSubscriptions"
IMPORT_FAILED = "ImportFailed"
CATCH_UP_EVENTS = "CatchUpEvents"
EVENTS_MISSED = "EventsMissed"          # events only the catch-up found (handled by it): alarmed
WEBHOOK_ENDPOINT_DISABLED = "WebhookEndpointDisabled"  # 1 when the platform's endpoint is disabled at Stripe, else 0
# Stripe's side (chalicelib/stripe_ceiling.py). Requests per lease write is
# StripeRequests / StripeCeilingLeases.
STRIPE_REQUESTS = "StripeRequests"              # every request sent, retries included
STRIPE_RATE_LIMITED = "StripeRateLimited"       # a 429 of Stripe's rate limiter; also counted by its reason
STRIPE_OTHER_429 = "StripeOther429"             # a 429 without a rate limit reason (a lock timeout)
STRIPE_CEILING_LEASES = "StripeCeilingLeases"   # lease writes to the ceiling's lanes
STRIPE_CEILING_WAITED = "StripeCeilingWaited"   # requests that slept until their slot
STRIPE_CEILING_FULL = "StripeCeilingFull"       # requests refused: no slot within the longest wait
STRIPE_CEILING_UNAVAILABLE = "StripeCeilingUnavailable"  # the lanes could not be written: paced alone
# Stripe-Rate-Limited-Reason's documented values; another one is counted as Other.
RATE_LIMITED_REASONS = ("global-rate", "global-concurrency", "endpoint-rate", "endpoint-concurrency",
                        "resource-specific")


def rate_limited_by(reason: str) -> str:
    """StripeRateLimited<Reason>: StripeRateLimitedEndpointConcurrency, ...
    The header's value is Stripe's to choose: one not documented does not
    make a metric of its own."""
    known = reason.strip().lower()
    if known not in RATE_LIMITED_REASONS:
        return STRIPE_RATE_LIMITED + "Other"
    return STRIPE_RATE_LIMITED + "".join(word.capitalize() for word in known.split("-"))


class Metrics:
    """Counts of one invocation, written at its end as one EMF line in the
    namespace CustomerHub/StripeConnector, dimension service=stripe-connector.
    A name counted several times is written once, with the sum."""

    def __init__(self, emit: bool = False):
        self._emit = emit
        self._counts: Counter = Counter()

    def count(self, name: str, value: int = 1) -> None:
        # A zero is written too: an alarm on it sees data, not silence.
        self._counts[name] += value

    def flush(self) -> Dict[str, int]:
        """Write what was counted, and forget it; returns it. Nothing
        counted, nothing written. A failure to write is logged, never
        raised: the invocation's own work is done."""
        counts, self._counts = self._counts, Counter()
        if counts and self._emit:
            try:
                self._write(counts)
            except Exception:
                logging.getLogger(__name__).exception("Writing the metrics failed")
        return dict(counts)

    @staticmethod
    def _write(counts: Counter) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics

        metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
        for name in sorted(counts):
            metrics.add_metric(name=name, unit="Count", value=counts[name])
        # One line on stdout, where Lambda's log agent reads EMF.
        metrics.flush_metrics()
