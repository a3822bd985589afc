"""Lazy factories: each service is built on first use in a container, from
the settings, and reused by later invocations."""
import functools

from chalicelib import models
from chalicelib.connections import ConnectionStore, ConnectorService, OAuthStateStore
from chalicelib.member_customers import MemberCustomerStore
from chalicelib.portal import PortalService
from chalicelib.settings import get_settings
from chalicelib.stripe_gateway import StripeGateway, make_client
from chalicelib.webhooks import EventLog, WebhookReceiver


@functools.lru_cache(maxsize=1)
def get_stripe_gateway() -> StripeGateway:
    settings = get_settings()
    client = make_client(settings.stripe_secret_key, settings.stripe_client_id,
                         settings.stripe_api_base, settings.stripe_connect_base)
    return StripeGateway(client, settings.stripe_webhook_secret)


@functools.lru_cache(maxsize=1)
def get_bound_models() -> None:
    models.bind(get_settings())


@functools.lru_cache(maxsize=1)
def get_connector_service() -> ConnectorService:
    get_bound_models()
    return ConnectorService(ConnectionStore(), OAuthStateStore(), get_stripe_gateway(),
                            get_settings().oauth_redirect_uri)


@functools.lru_cache(maxsize=1)
def get_portal_service() -> PortalService:
    get_bound_models()
    settings = get_settings()
    return PortalService(ConnectionStore(), MemberCustomerStore(), get_stripe_gateway(),
                         settings.app_base_url, settings.return_url_origins)


@functools.lru_cache(maxsize=1)
def get_webhook_receiver() -> WebhookReceiver:
    get_bound_models()
    return WebhookReceiver(get_stripe_gateway(), EventLog(), get_connector_service())


def reset() -> None:
    """Forget every built service and the settings (tests change the environment)."""
    for factory in (get_settings, get_stripe_gateway, get_bound_models,
                    get_connector_service, get_portal_service, get_webhook_receiver):
        factory.cache_clear()
