"""The billing portal: the admin's settings, the portal configuration they
make on the connected account, and the member's way into the portal."""
import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from chalicelib.auth import Caller
from chalicelib.clock import Clock, utc_now
from chalicelib.connections import CONNECTED, ConnectionStore, connector_card
from chalicelib.identity import CustomerMembers
from chalicelib.import_records import ImportStore
from chalicelib.event_health import EventHealth
from chalicelib.errors import (CustomerGone, InvalidRequest, InvalidReturnUrl, InvalidSettings,
                               NoBillingAccount, NotConnected, PortalConfigurationGone,
                               PortalDisabled)
from chalicelib.limits import PORTAL_SESSIONS, PORTAL_SESSIONS_PERIOD, NoLimits, RateLimits, portal_session_key
from chalicelib.member_customers import FROM_EMAIL_LOOKUP, MemberCustomer, MemberCustomerStore
from chalicelib.models import ConnectionModel
from chalicelib.stripe_gateway import StripeCustomer, StripeGateway

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
URL_FIELDS = ("privacy_policy_url", "terms_of_service_url")
FLAG_FIELDS = ("portal_enabled", "allow_cancel")
SETTINGS_FIELDS = ("portal_enabled", "privacy_policy_url", "terms_of_service_url", "allow_cancel")
GRACE_DAYS_FIELD = "past_due_grace_days"
# Left out, the stored value stays.
OPTIONAL_SETTINGS_FIELDS = (GRACE_DAYS_FIELD,)
MIN_GRACE_DAYS, MAX_GRACE_DAYS = 0, 60
SESSION_FIELDS = ("return_url",)
CANCELLATION_REASONS = ("too_expensive", "missing_features", "switched_service", "unused",
                        "customer_service", "too_complex", "low_quality", "other")
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = Tuple[str, str, int]


@dataclass(frozen=True)
class PortalSettings:
    portal_enabled: bool
    privacy_policy_url: Optional[str]
    terms_of_service_url: Optional[str]
    allow_cancel: bool
    # None: keep what is stored.
    past_due_grace_days: Optional[int] = None


def parse_portal_settings(body: Any) -> PortalSettings:
    """The body of PUT /connectors/stripe/settings, checked whole: the shape
    first (invalid_request), then what the values mean (invalid_settings)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object")
    unknown = sorted(set(body) - set(SETTINGS_FIELDS) - set(OPTIONAL_SETTINGS_FIELDS))
    if unknown:
        raise InvalidRequest("Unknown field: %s" % ", ".join(unknown))
    missing = [name for name in SETTINGS_FIELDS if name not in body]
    if missing:
        raise InvalidRequest("Missing field: %s" % ", ".join(missing))
    for name in FLAG_FIELDS:
        if not isinstance(body[name], bool):
            raise InvalidRequest("%s must be true or false" % name)
    for name in URL_FIELDS:
        if body[name] is not None and not isinstance(body[name], str):
            raise InvalidRequest("%s must be a string or null" % name)
    grace_days = body.get(GRACE_DAYS_FIELD)
    # JSON's true is a Python int, and 14.0 is not a whole number to a client
    # whose language keeps the two apart.
    if GRACE_DAYS_FIELD in body and (isinstance(grace_days, bool) or not isinstance(grace_days, int)):
        raise InvalidRequest("%s must be a whole number of days" % GRACE_DAYS_FIELD)
    for name in URL_FIELDS:
        if body[name] is not None:
            check_policy_url(name, body[name])
    if grace_days is not None and not MIN_GRACE_DAYS <= grace_days <= MAX_GRACE_DAYS:
        raise InvalidSettings("%s must be from %d to %d" % (GRACE_DAYS_FIELD, MIN_GRACE_DAYS, MAX_GRACE_DAYS))
    settings = PortalSettings(past_due_grace_days=grace_days, **{name: body[name] for name in SETTINGS_FIELDS})
    if settings.portal_enabled and not (settings.privacy_policy_url and settings.terms_of_service_url):
        raise InvalidSettings("Enabling the portal needs privacy_policy_url and terms_of_service_url")
    return settings


def check_policy_url(name: str, url: str) -> None:
    """A URL Stripe will show members: absolute https on a named host."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidSettings("%s is longer than %d characters" % (name, MAX_URL_LENGTH))
    if not _is_plain(url):
        raise InvalidSettings("%s must be an absolute https URL" % name)
    try:
        parts = urlsplit(url)
        parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise InvalidSettings("%s must be an absolute https URL" % name) from exc
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidSettings("%s must be an absolute https URL" % name)
    if parts.username is not None or parts.password is not None:
        raise InvalidSettings("%s must not carry a user name or password" % name)


def parse_session_request(body: Any) -> Optional[str]:
    """The return_url asked for in POST /billing/portal/sessions, if any."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object")
    unknown = sorted(set(body) - set(SESSION_FIELDS))
    if unknown:
        raise InvalidRequest("Unknown field: %s" % ", ".join(unknown))
    return body.get("return_url")


def allowed_return_url(requested: Any, default: str, allowed_origins: Sequence[str]) -> str:
    """Where the portal sends the member back: default when none is asked for,
    else a URL on one of allowed_origins (an open redirect otherwise)."""
    if requested is None:
        return default
    well_formed = isinstance(requested, str) and len(requested) <= MAX_URL_LENGTH and _is_plain(requested)
    origin = _origin(requested) if well_formed else None
    # A URL that parses to no origin (`javascript:`, `https:host`, `//host`)
    # never matches, whatever the allowed list holds.
    if origin is None or origin not in {_origin(allowed) for allowed in allowed_origins}:
        raise InvalidReturnUrl("return_url must be an absolute URL on the app's own origin "
                               "or another allowed one")
    return requested


def _origin(url: str) -> Optional[Origin]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _is_plain(url: str) -> bool:
    # Browsers read a backslash as a slash and drop tabs and newlines, so a
    # URL holding them may lead somewhere other than where urlsplit says.
    return not any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7f or ch == "\\" for ch in url)


def portal_configuration_params(settings: PortalSettings, default_return_url: str,
                                site_id: str) -> Dict[str, Any]:
    """What the site's portal configuration says at Stripe."""
    return {
        "business_profile": {
            "privacy_policy_url": settings.privacy_policy_url,
            "terms_of_service_url": settings.terms_of_service_url,
        },
        "default_return_url": default_return_url,
        "features": {
            "payment_method_update": {"enabled": True},
            "invoice_history": {"enabled": True},
            # Names and emails belong to CustomerHub's profile, not to Stripe's.
            "customer_update": {"enabled": False},
            # Members keep what they paid for: a cancellation never cuts a
            # period short.
            "subscription_cancel": {
                "enabled": settings.allow_cancel,
                "mode": "at_period_end",
                "cancellation_reason": {"enabled": True, "options": list(CANCELLATION_REASONS)},
            },
        },
        "metadata": {"customerhub_site_id": site_id},
    }


def candidates(customers: Iterable[StripeCustomer], user_id: str) -> List[StripeCustomer]:
    """The customers with the member's email that may be theirs: those whose
    metadata names the member or nobody."""
    return [c for c in customers if c.user_id in (user_id, None)]


def choose_customer(customers: Iterable[StripeCustomer], user_id: str,
                    recorded: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Among the customers with the member's email: the one that names the
    member, else the only one that names nobody. A customer the site has
    recorded (`recorded`: customer id → member) as another member is never
    chosen: sharing an email address does not make someone's customer
    yours. None when that leaves nobody, or more than one."""
    recorded = recorded or {}
    customers = [c for c in candidates(customers, user_id) if recorded.get(c.customer_id, user_id) == user_id]
    named = [c.customer_id for c in customers if c.user_id == user_id]
    if named:
        return named[0] if len(named) == 1 else None
    unnamed = [c.customer_id for c in customers if c.user_id is None]
    return unnamed[0] if len(unnamed) == 1 else None


def _apply(connection: ConnectionModel, settings: PortalSettings) -> None:
    connection.portal_enabled = settings.portal_enabled
    connection.privacy_policy_url = settings.privacy_policy_url
    connection.terms_of_service_url = settings.terms_of_service_url
    connection.allow_cancel = settings.allow_cancel
    if settings.past_due_grace_days is not None:
        connection.past_due_grace_days = settings.past_due_grace_days


def portal_open(connection: Optional[ConnectionModel]) -> bool:
    return (connection is not None and connection.status == CONNECTED
            and bool(connection.portal_enabled) and bool(connection.portal_configuration_id))


class PortalConfigurations:
    """The site's portal configuration on a connected account, made to
    follow the admin's settings."""

    def __init__(self, stripe: StripeGateway, app_base_url: str):
        self._stripe = stripe
        self._app_base_url = app_base_url

    def activate(self, site_id: str, account_id: str, stored_id: Optional[str],
                 settings: PortalSettings) -> str:
        params = portal_configuration_params(settings, self._app_base_url, site_id)
        if stored_id:
            try:
                return self._stripe.update_portal_configuration(account_id, stored_id, dict(params, active=True))
            except PortalConfigurationGone:
                logger.info("Portal configuration %s of site %s is gone at Stripe; making a new one",
                            stored_id, site_id)
        return self._stripe.create_portal_configuration(account_id, params)

    def carry_over(self, connection: ConnectionModel, account_id: str) -> str:
        """The site's configuration made on account_id, the account that
        replaces its connected one, with the stored settings."""
        settings = PortalSettings(True, connection.privacy_policy_url, connection.terms_of_service_url,
                                  bool(connection.allow_cancel))
        return self.activate(connection.site_id, account_id, None, settings)

    def deactivate(self, account_id: str, stored_id: Optional[str]) -> Optional[str]:
        if not stored_id:
            return None
        try:
            self._stripe.update_portal_configuration(account_id, stored_id, {"active": False})
        except PortalConfigurationGone:
            return None
        return stored_id

    def abandon(self, account_id: str, configuration_id: str) -> None:
        """Turn off a configuration made for a save that did not happen, so no
        configuration on the account is active without the site knowing it."""
        try:
            self._stripe.update_portal_configuration(account_id, configuration_id, {"active": False})
        except Exception:
            logger.exception("Could not turn off the unused portal configuration %s on %s",
                             configuration_id, account_id)


class PortalService:
    def __init__(self, connections: ConnectionStore, customers: MemberCustomerStore,
                 stripe: StripeGateway, app_base_url: str, return_url_origins: Sequence[str] = (),
                 imports: Optional[ImportStore] = None, clock: Clock = utc_now,
                 members: Optional[CustomerMembers] = None, limits: Optional[RateLimits] = None,
                 health: Optional[EventHealth] = None):
        self._health = health or EventHealth(stripe, None, clock)
        self._limits = limits or NoLimits()
        self._connections = connections
        self._imports = imports or ImportStore()
        self._customers = customers
        self._members = members or CustomerMembers()
        self._stripe = stripe
        self._configurations = PortalConfigurations(stripe, app_base_url)
        self._app_base_url = app_base_url
        self._allowed_origins = (app_base_url,) + tuple(return_url_origins)
        self._clock = clock

    # ------------------------------------------------------------ the admin

    def save_settings(self, site_id: str, settings: PortalSettings) -> dict:
        """Store the admin's settings after making Stripe's configuration
        follow them. A Stripe failure leaves the stored settings as they were."""
        connection = self._connections.get(site_id)
        if connection is None or connection.status != CONNECTED:
            return self._keep_for_next_connection(site_id, connection, settings)
        account_id = connection.account_id
        stored_id = connection.portal_configuration_id
        if settings.portal_enabled:
            configuration_id = self._configurations.activate(site_id, account_id, stored_id, settings)
        else:
            configuration_id = self._configurations.deactivate(account_id, stored_id)
        _apply(connection, settings)
        connection.portal_configuration_id = configuration_id
        try:
            self._connections.save(connection)
        except Exception:
            if settings.portal_enabled and configuration_id != stored_id:
                self._configurations.abandon(account_id, configuration_id)
            raise
        logger.info("Site %s saved its portal settings (enabled: %s)", site_id, settings.portal_enabled)
        return connector_card(connection, self._imports.sync_of(connection), self._health.of(connection))

    def _keep_for_next_connection(self, site_id: str, connection: Optional[ConnectionModel],
                                  settings: PortalSettings) -> dict:
        """Settings saved while no account is connected: stored for the next
        connection, with the portal off and nothing asked of Stripe (a
        configuration left on an earlier account is out of reach)."""
        if settings.portal_enabled:
            raise NotConnected("Connect a Stripe account before turning the portal on")
        connection = connection or ConnectionModel(site_id)
        _apply(connection, settings)
        # A connect meanwhile makes this a conflict (the version attribute).
        self._connections.save(connection)
        logger.info("Site %s saved its portal settings while disconnected", site_id)
        return connector_card(connection)

    # ----------------------------------------------------------- the member

    def availability(self, member: Caller) -> dict:
        """Whether the member's Billing link shows: the portal is open and a
        Stripe customer is known for them on the connected account (found by
        their verified email when none is recorded, and then remembered)."""
        connection = self._connections.get(member.site_id)
        if not portal_open(connection):
            return {"available": False}
        account_id = connection.account_id
        known = (self._remembered(member, account_id) is not None
                 or self._look_up(member, account_id) is not None)
        return {"available": known}

    def open_session(self, member: Caller, requested_return_url: Any) -> dict:
        """A billing portal session for the member, on the site's account."""
        return_url = allowed_return_url(requested_return_url, self._app_base_url, self._allowed_origins)
        # The limit guards the site's Stripe account: each session costs it
        # requests. A request that fails validation reaches neither the
        # limit nor Stripe and does not count. A refused one writes nothing
        # and asked Stripe nothing, so a member retrying is not kept out past
        # the minute. Taken before anything is read, a refusal costs this
        # one write; a request the portal then turns away (portal_disabled)
        # has counted, which only a client hammering a closed portal notices.
        self._limits.at_most(portal_session_key(member.site_id, member.user_id), PORTAL_SESSIONS,
                             PORTAL_SESSIONS_PERIOD,
                             "Over %d billing portal sessions in a minute" % PORTAL_SESSIONS)
        connection = self._connections.get(member.site_id)
        if not portal_open(connection):
            raise PortalDisabled("The billing portal is not available on this site")
        account_id = connection.account_id
        configuration_id = connection.portal_configuration_id
        remembered = self._remembered(member, account_id)
        if remembered is not None:
            try:
                return {"url": self._stripe.create_portal_session(
                    account_id, remembered.customer_id, configuration_id, return_url)}
            except CustomerGone:
                self._customers.forget(member.site_id, member.user_id, remembered.customer_id)
                logger.info("Customer %s of user %s on site %s is gone at Stripe; looking again",
                            remembered.customer_id, member.user_id, member.site_id)
        customer_id = self._look_up(member, account_id)
        if customer_id is None:
            raise NoBillingAccount("You have no billing account on this site")
        try:
            return {"url": self._stripe.create_portal_session(
                account_id, customer_id, configuration_id, return_url)}
        except CustomerGone as exc:
            self._customers.forget(member.site_id, member.user_id, customer_id)
            raise NoBillingAccount("You have no billing account on this site") from exc

    def _remembered(self, member: Caller, account_id: str) -> Optional[MemberCustomer]:
        """The member's customer the site remembers on account_id. One that an
        email lookup found and that the site has since recorded as another
        member (a link, a claim, a subscription naming them) is forgotten."""
        remembered = self._customers.find(member.site_id, member.user_id, account_id)
        if remembered is None or remembered.source != FROM_EMAIL_LOOKUP:
            return remembered
        key = (member.site_id, account_id, remembered.customer_id)
        owner = self._members.recorded([key]).get(key, member.user_id)
        if owner == member.user_id:
            return remembered
        logger.info("Customer %s found by email for user %s of site %s is recorded as another member; "
                    "forgetting it", remembered.customer_id, member.user_id, member.site_id)
        self._customers.forget(member.site_id, member.user_id, remembered.customer_id)
        return None

    def _look_up(self, member: Caller, account_id: str) -> Optional[str]:
        """The member's customer found by the token's email, remembered; None
        when there is none, or no single one. An email CustomerHub has not
        verified proves nothing: anyone can type another person's address
        into their profile, so it costs no Stripe request either."""
        if not member.email or not member.email_verified:
            return None
        customers = self._stripe.customers_with_email(account_id, member.email)
        keys = [(member.site_id, account_id, c.customer_id) for c in candidates(customers, member.user_id)]
        recorded = {customer: user for (_, _, customer), user in self._members.recorded(keys).items()}
        customer_id = choose_customer(customers, member.user_id, recorded)
        if customer_id is None:
            logger.info("No single customer on %s for user %s of site %s (%d share the email)",
                        account_id, member.user_id, member.site_id, len(customers))
            return None
        found = MemberCustomer(member.site_id, member.user_id, account_id, customer_id, FROM_EMAIL_LOOKUP)
        if not self._customers.record(found, self._clock()):
            # A record for this account came first (a subscription, a link, or
            # a lookup racing this one): it wins.
            recorded_first = self._customers.find(member.site_id, member.user_id, account_id)
            if recorded_first is not None:
                return recorded_first.customer_id
        return customer_id
