"""Lazy factories: each service is built on first use in a container, from
the settings, and reused by later invocations.

A container is what one Lambda instance holds: its clients, its share of the
Stripe ceiling, its counts. A process is one instance, unless it runs several
side by side (the month-start benchmark runs each simulated instance in a
thread of its own, `with instance(name)`): then each builds its own."""
import contextvars
import functools
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, TypeVar

import boto3
import botocore.config
from pynamodb.connection import Connection

from chalicelib import models
from chalicelib.announcements import AccessEventBus, Announcer
from chalicelib.catch_up import CatchUp
from chalicelib.connections import ConnectionStore, ConnectorService, OAuthStateStore
from chalicelib.deliveries import Deliveries, QueuedEvents
from chalicelib.entitlements import AccessService, EntitlementStore
from chalicelib.event_health import EventHealth
from chalicelib.history import AccessHistory
from chalicelib.identity import CustomerMembers
from chalicelib.import_records import ImportStore
from chalicelib.imports import ImportService, ImportWorker
from chalicelib.limits import DynamoRateLimits
from chalicelib.member_customers import MemberCustomerStore
from chalicelib.member_search import MemberSearch
from chalicelib.observability import Metrics
from chalicelib.portal import PortalConfigurations, PortalService
from chalicelib.queues import EVENTS_QUEUE, WorkQueue
from chalicelib.settings import get_settings, metrics_emitted
from chalicelib.stripe_ceiling import DynamoLanes, StripeCeiling, StripeTraffic
from chalicelib.stripe_gateway import StripeGateway, longest_call_seconds, make_client
from chalicelib.sweep import Sweep
from chalicelib.unmatched import UnmatchedService
from chalicelib.webhooks import EventLog, WebhookReceiver
from chalicelib.writer import ViewWriter

if TYPE_CHECKING:
    import stripe

T = TypeVar("T")
_instance: "contextvars.ContextVar[str]" = contextvars.ContextVar("instance", default="")
_built: Dict[str, Dict[str, Any]] = {}
_building = threading.Lock()


@contextmanager
def instance(name: str) -> Iterator[None]:
    """Within it, this thread uses the container called `name`."""
    token = _instance.set(name)
    try:
        yield
    finally:
        _instance.reset(token)


def built_once(factory: Callable[[], T]) -> Callable[[], T]:
    """The factory's service, built on first use in the current container."""
    @functools.wraps(factory)
    def get() -> T:
        container = _built.setdefault(_instance.get(), {})
        try:
            return container[factory.__name__]
        except KeyError:
            pass
        service = factory()
        with _building:
            return container.setdefault(factory.__name__, service)
    return get


@built_once
def get_metrics() -> Metrics:
    """The invocation's counts, written when it ends (app.py)."""
    return Metrics(emit=metrics_emitted())


@built_once
def get_stripe_client() -> "stripe.StripeClient":
    settings = get_settings()
    return make_client(settings.stripe_secret_key, settings.stripe_client_id,
                       settings.stripe_api_base, settings.stripe_connect_base,
                       timeout=settings.stripe_timeout_seconds,
                       traffic=StripeTraffic(get_stripe_ceiling(), metrics=get_metrics()))


# Only the webhook checks signatures (get_webhook_gateway): the gateway every
# other caller has holds no signing secret, so the functions that only call
# Stripe never read its parameter (their roles may not), and stripe-python
# refuses to verify anything against an empty one.
NO_SIGNING_SECRET = ""


@built_once
def get_stripe_gateway() -> StripeGateway:
    return StripeGateway(get_stripe_client(), NO_SIGNING_SECRET)


@built_once
def get_webhook_gateway() -> StripeGateway:
    """The same client, with the Connect endpoint's signing secret."""
    return StripeGateway(get_stripe_client(), get_settings().stripe_webhook_secret)


# A lease gives up on a DynamoDB that does not answer within a second, twice,
# and the instance paces itself alone meanwhile (stripe_ceiling.py).
CEILING_DYNAMODB = botocore.config.Config(connect_timeout=1, read_timeout=1,
                                          retries={"max_attempts": 2, "mode": "standard"})


@built_once
def get_stripe_ceiling() -> StripeCeiling:
    get_bound_models()
    settings = get_settings()
    lanes = DynamoLanes(lambda: boto3.client("dynamodb", region_name=settings.aws_region,
                                             endpoint_url=settings.aws_endpoint_url, config=CEILING_DYNAMODB),
                        settings.rate_limits_table)
    return StripeCeiling(lanes, settings.stripe_requests_per_second, metrics=get_metrics())


@built_once
def get_bound_models() -> None:
    models.bind(get_settings())


@built_once
def get_sqs_client():
    """One SQS client for both queues, made when a queue first sends."""
    settings = get_settings()
    return boto3.client("sqs", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)


@built_once
def get_work_queue() -> WorkQueue:
    return WorkQueue(get_sqs_client)


@built_once
def get_events_queue() -> WorkQueue:
    return WorkQueue(get_sqs_client, EVENTS_QUEUE)


@built_once
def get_deliveries() -> Deliveries:
    """The webhook's acknowledgement: it binds no models, since it reads no table."""
    return Deliveries(get_webhook_gateway(), get_events_queue(), metrics=get_metrics())


@built_once
def get_queued_events() -> QueuedEvents:
    return QueuedEvents(get_webhook_receiver(), metrics=get_metrics())


@built_once
def get_rate_limits() -> DynamoRateLimits:
    get_bound_models()
    settings = get_settings()
    return DynamoRateLimits(lambda: boto3.client("dynamodb", region_name=settings.aws_region,
                                                 endpoint_url=settings.aws_endpoint_url),
                            settings.rate_limits_table)


@built_once
def get_import_service() -> ImportService:
    get_bound_models()
    return ImportService(ImportStore(), ConnectionStore(), get_work_queue(), metrics=get_metrics(),
                         limits=get_rate_limits())


@built_once
def get_import_worker() -> ImportWorker:
    return ImportWorker(ImportStore(), ConnectionStore(), get_stripe_gateway(), get_view_writer(),
                        get_work_queue(), metrics=get_metrics())


@built_once
def get_catch_up() -> CatchUp:
    return CatchUp(ConnectionStore(), get_connector_service(), get_stripe_gateway(), get_webhook_receiver(),
                   get_work_queue(), metrics=get_metrics(), health=get_event_health())


@built_once
def get_event_health() -> EventHealth:
    get_bound_models()
    return EventHealth(get_stripe_gateway(), get_settings().stripe_webhook_endpoint_id, metrics=get_metrics())


@built_once
def get_member_search() -> MemberSearch:
    get_bound_models()
    return MemberSearch(ConnectionStore(), get_stripe_gateway(), get_dynamodb_connection())


@built_once
def get_access_history() -> AccessHistory:
    get_bound_models()
    return AccessHistory()


@built_once
def get_connector_service() -> ConnectorService:
    get_bound_models()
    settings = get_settings()
    return ConnectorService(ConnectionStore(), OAuthStateStore(), get_stripe_gateway(),
                            settings.oauth_redirect_uri, get_import_service(), health=get_event_health(),
                            portal=PortalConfigurations(get_stripe_gateway(), settings.app_base_url))


@built_once
def get_portal_service() -> PortalService:
    get_bound_models()
    settings = get_settings()
    return PortalService(ConnectionStore(), MemberCustomerStore(), get_stripe_gateway(),
                         settings.app_base_url, settings.return_url_origins, members=CustomerMembers(),
                         limits=get_rate_limits(), health=get_event_health())


@built_once
def get_entitlement_store() -> EntitlementStore:
    get_bound_models()
    return EntitlementStore()


@built_once
def get_dynamodb_connection() -> Connection:
    """For transactions and reads across tables."""
    settings = get_settings()
    return Connection(region=settings.aws_region, host=settings.aws_endpoint_url)


@built_once
def get_view_writer() -> ViewWriter:
    get_bound_models()
    return ViewWriter(get_dynamodb_connection())


@built_once
def get_webhook_receiver() -> WebhookReceiver:
    return WebhookReceiver(get_stripe_gateway(), EventLog(), get_connector_service(),
                           ConnectionStore(), get_view_writer(), metrics=get_metrics())


@built_once
def get_access_service() -> AccessService:
    return AccessService(get_entitlement_store())


@built_once
def get_announcer() -> Announcer:
    settings = get_settings()
    events = boto3.client("events", region_name=settings.aws_region,
                          endpoint_url=settings.aws_endpoint_url)
    return Announcer(AccessEventBus(events, settings.access_event_bus), get_entitlement_store(),
                     metrics=get_metrics())


@built_once
def get_sweep() -> Sweep:
    get_bound_models()
    return Sweep(ConnectionStore(), get_stripe_gateway(), writer=get_view_writer(),
                 longest_stripe_call=longest_call_seconds(get_settings().stripe_timeout_seconds),
                 metrics=get_metrics(), limits=get_rate_limits())


@built_once
def get_unmatched_service() -> UnmatchedService:
    get_bound_models()
    return UnmatchedService(ConnectionStore(), CustomerMembers(), get_entitlement_store(),
                            get_dynamodb_connection())


def reset() -> None:
    """Forget every built service and the settings (tests change the environment)."""
    get_settings.cache_clear()
    _built.clear()
