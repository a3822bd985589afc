"""The one place that reads the environment and SSM.

Everything else receives a `Settings` value; nothing else looks at
`os.environ`. In AWS the three secrets come from SSM SecureString parameters
named by `<NAME>_PARAM`; locally the values themselves may be given.

Each secret is read when first needed (once per container) and checked as
it is read, so a function that never calls Stripe or checks a token never
reads those parameters, and its role may not (.chalice/policy-*.json).

Deployed means running in Lambda (AWS_LAMBDA_FUNCTION_NAME set, as Lambda's
runtime sets it; Chalice's local server and test client do not): there a
placeholder left from the README or .chalice/config.json stops the connector
instead of being used.
"""
import functools
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional
from urllib.parse import urlsplit

from chalicelib.access import is_stripe_id
from chalicelib.errors import ConfigurationError
from chalicelib.observability import JSON, PLAIN, register_secret
from chalicelib.stripe_ceiling import DEFAULT_REQUESTS_PER_SECOND
from chalicelib.stripe_gateway import HTTP_TIMEOUT_SECONDS

SECRET_NAMES = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "AUTH_JWT_SECRET")
MIN_JWT_SECRET_BYTES = 32
# What stands where a real value goes, in any case: `ca_REPLACE_WITH_…` in
# .chalice/config.json, `whsec_placeholder` (or `sk_test_placeholder`) put
# in SSM before the real one exists, `sk_…` copied from the README.
PLACEHOLDER_MARKS = ("replace", "placeholder", "…")


def is_placeholder(value: str) -> bool:
    folded = value.lower()
    return any(mark in folded for mark in PLACEHOLDER_MARKS)


def in_lambda(environ: Mapping[str, str]) -> bool:
    # Set by Lambda's runtime; Chalice's local server and test client do not.
    return bool(environ.get("AWS_LAMBDA_FUNCTION_NAME"))


class Secrets:
    """The three secrets, each taken when first asked for: from its SSM
    parameter when `<NAME>_PARAM` names one, else from the environment. A
    value is checked as it is taken (a placeholder when deployed, a short
    token key) and handed to `on_read` (the logs' masking) before anything
    can use it. A failed read is not kept: the next use tries again."""

    def __init__(self, environ: Mapping[str, str], read_parameter: Optional[Callable[[str], str]],
                 deployed: bool, on_read: Optional[Callable[[str], None]] = None):
        self._environ = environ
        self._read_parameter = read_parameter
        self._deployed = deployed
        self._on_read = on_read
        self._values: Dict[str, str] = {}
        self._lock = threading.Lock()
        for name in SECRET_NAMES:
            parameter = self.parameter(name)
            if parameter is None:
                # Given in the environment: nothing to fetch, so checked now.
                self.get(name)
            elif read_parameter is None:
                raise ConfigurationError("%s_PARAM is set but SSM is not reachable" % name)

    def parameter(self, name: str) -> Optional[str]:
        return (self._environ.get(name + "_PARAM") or "").strip() or None

    def get(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            pass
        with self._lock:
            if name not in self._values:
                self._values[name] = self._take(name)
            return self._values[name]

    def _take(self, name: str) -> str:
        parameter = self.parameter(name)
        if parameter is not None:
            found = self._read_parameter(parameter)
            where = "%s (SSM parameter %s)" % (name, parameter)
        else:
            found = (self._environ.get(name) or "").strip()
            where = name
        if not found or not found.strip():
            raise ConfigurationError("%s is required" % where)
        # The message names the setting, never the value: it is a secret.
        if self._deployed and is_placeholder(found):
            raise ConfigurationError("%s is a placeholder, not the real value" % where)
        if name == "AUTH_JWT_SECRET" and len(found.encode("utf-8")) < MIN_JWT_SECRET_BYTES:
            raise ConfigurationError("%s must be at least %d bytes" % (where, MIN_JWT_SECRET_BYTES))
        if self._on_read is not None:
            self._on_read(found)
        return found


@dataclass(frozen=True)
class Settings:
    stripe_client_id: str
    stripe_api_base: str
    stripe_connect_base: str
    stripe_timeout_seconds: float
    stripe_requests_per_second: float   # every function together (stripe_ceiling.py)
    auth_jwt_issuer: str
    app_base_url: str        # an origin: the UI's pages are below it
    return_url_origins: tuple
    oauth_redirect_uri: str
    access_event_bus: str
    # The partner event source of a Stripe event destination on EventBridge, if any.
    stripe_event_source: Optional[str]
    # The platform's Connect webhook endpoint `we_…`, whose status is watched, if any.
    stripe_webhook_endpoint_id: Optional[str]
    aws_endpoint_url: Optional[str]
    aws_region: str
    connections_table: str
    oauth_states_table: str
    webhook_events_table: str
    member_customers_table: str
    entitlements_table: str
    imports_table: str
    catch_ups_table: str
    open_invoices_table: str
    customer_members_table: str
    subscription_members_table: str
    rate_limits_table: str
    webhook_endpoints_table: str
    access_history_table: str
    secrets: Secrets = field(repr=False, compare=False)

    # Read when first asked for (Secrets): the API asks for all three; the
    # functions that call Stripe for its key alone; announce_access for none.
    @property
    def stripe_secret_key(self) -> str:
        return self.secrets.get("STRIPE_SECRET_KEY")

    @property
    def stripe_webhook_secret(self) -> str:
        return self.secrets.get("STRIPE_WEBHOOK_SECRET")

    @property
    def auth_jwt_secret(self) -> str:
        return self.secrets.get("AUTH_JWT_SECRET")

    def __repr__(self) -> str:
        # Settings end up in tracebacks and debug logs; the secrets must not.
        return "Settings(stripe_client_id=%r, app_base_url=%r, aws_endpoint_url=%r)" % (
            self.stripe_client_id, self.app_base_url, self.aws_endpoint_url)


# Plain http is for a UI on the developer's own machine only.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


def parse_origin(name: str, value: str) -> str:
    """`https://host[:port]` (http only on loopback), without path, query,
    fragment or userinfo; a trailing slash is tolerated. Anything else is a
    configuration error: a half-parsed origin would let a return URL that
    parses to nothing match it."""
    problem = "%s entry %r is not an origin (https://host[:port])" % (name, value)
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in value):
        raise ConfigurationError(problem)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(problem) from exc
    host = parts.hostname or ""
    allowed_scheme = parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS)
    if (not allowed_scheme or not host or parts.username is not None or parts.password is not None
            or parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value or "#" in value):
        raise ConfigurationError(problem)
    return "%s://%s%s" % (parts.scheme, host, "" if port is None else ":%d" % port)


def load_settings(environ: Mapping[str, str],
                  read_parameter: Optional[Callable[[str], str]] = None,
                  on_secret: Optional[Callable[[str], None]] = None) -> Settings:
    """Build settings from an environment. The secrets named by `*_PARAM`
    are fetched through `read_parameter` (SSM in AWS) when first used; each
    secret is handed to `on_secret` as it is taken."""
    deployed = in_lambda(environ)

    def value(name: str, default: Optional[str] = None) -> Optional[str]:
        raw = environ.get(name, "")
        found = raw.strip() if raw.strip() else default
        if deployed and raw.strip() and is_placeholder(found):
            raise ConfigurationError("%s is a placeholder (%r), not the real value" % (name, found))
        return found

    def required(name: str) -> str:
        found = value(name)
        if not found:
            raise ConfigurationError("%s is required" % name)
        return found

    def positive(name: str, default: float, unit: str) -> float:
        raw = value(name)
        if raw is None:
            return default
        try:
            found = float(raw)
        except ValueError:
            found = math.nan
        if not math.isfinite(found) or found <= 0:
            raise ConfigurationError("%s must be a positive number of %s" % (name, unit))
        return found

    for name in SECRET_NAMES:
        value(name + "_PARAM")  # a parameter's name is no secret: a placeholder there is named
    settings = Settings(
        stripe_client_id=required("STRIPE_CLIENT_ID"),
        stripe_api_base=value("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/"),
        stripe_connect_base=value("STRIPE_CONNECT_BASE", "https://connect.stripe.com").rstrip("/"),
        stripe_timeout_seconds=positive("STRIPE_TIMEOUT_SECONDS", HTTP_TIMEOUT_SECONDS, "seconds"),
        stripe_requests_per_second=positive("STRIPE_REQUESTS_PER_SECOND", DEFAULT_REQUESTS_PER_SECOND,
                                            "requests a second"),
        auth_jwt_issuer=value("AUTH_JWT_ISSUER", "customerhub"),
        app_base_url=parse_origin("APP_BASE_URL", required("APP_BASE_URL")),
        return_url_origins=tuple(
            parse_origin("RETURN_URL_ORIGINS", item.strip())
            for item in value("RETURN_URL_ORIGINS", "").split(",") if item.strip()),
        oauth_redirect_uri=required("OAUTH_REDIRECT_URI"),
        access_event_bus=value("ACCESS_EVENT_BUS", "default"),
        stripe_event_source=value("STRIPE_EVENT_SOURCE"),
        stripe_webhook_endpoint_id=value("STRIPE_WEBHOOK_ENDPOINT_ID"),
        aws_endpoint_url=value("AWS_ENDPOINT_URL"),
        aws_region=value("AWS_REGION", value("AWS_DEFAULT_REGION", "us-east-1")),
        connections_table=value("CONNECTIONS_TABLE", "stripe-connector-connections"),
        oauth_states_table=value("OAUTH_STATES_TABLE", "stripe-connector-oauth-states"),
        webhook_events_table=value("WEBHOOK_EVENTS_TABLE", "stripe-connector-webhook-events"),
        member_customers_table=value("MEMBER_CUSTOMERS_TABLE", "stripe-connector-member-customers"),
        entitlements_table=value("ENTITLEMENTS_TABLE", "stripe-connector-entitlements"),
        imports_table=value("IMPORTS_TABLE", "stripe-connector-imports"),
        catch_ups_table=value("CATCH_UPS_TABLE", "stripe-connector-catch-ups"),
        open_invoices_table=value("OPEN_INVOICES_TABLE", "stripe-connector-open-invoices"),
        customer_members_table=value("CUSTOMER_MEMBERS_TABLE", "stripe-connector-customer-members"),
        subscription_members_table=value("SUBSCRIPTION_MEMBERS_TABLE", "stripe-connector-subscription-members"),
        rate_limits_table=value("RATE_LIMITS_TABLE", "stripe-connector-rate-limits"),
        webhook_endpoints_table=value("WEBHOOK_ENDPOINTS_TABLE", "stripe-connector-webhook-endpoints"),
        access_history_table=value("ACCESS_HISTORY_TABLE", "stripe-connector-access-history"),
        secrets=Secrets(environ, read_parameter, deployed, on_secret),
    )
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    parts = urlsplit(settings.oauth_redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError("OAUTH_REDIRECT_URI must be an absolute http(s) URL")
    source = settings.stripe_event_source
    # An EventBridge event source name: no spaces, at most 256 characters.
    if source is not None and (len(source) > 256 or any(ch.isspace() for ch in source)):
        raise ConfigurationError("STRIPE_EVENT_SOURCE must be an EventBridge event source name")
    endpoint = settings.stripe_webhook_endpoint_id
    if endpoint is not None and not (endpoint.startswith("we_") and len(endpoint) > 3 and is_stripe_id(endpoint)):
        raise ConfigurationError("STRIPE_WEBHOOK_ENDPOINT_ID must be a webhook endpoint id (we_…)")


def _ssm_reader(region: str, endpoint_url: Optional[str]) -> Callable[[str], str]:
    """Reads a SecureString; its client is made at the first read, so that a
    function that reads none makes none."""
    clients = []

    def read(name: str) -> str:
        if not clients:
            import boto3
            clients.append(boto3.client("ssm", region_name=region, endpoint_url=endpoint_url))
        client = clients[0]
        try:
            return client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except client.exceptions.ParameterNotFound as exc:
            raise ConfigurationError("SSM parameter %s does not exist" % name) from exc

    return read


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this container, read once on first use; each secret
    when it is first used."""
    environ = dict(os.environ)
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    reader = _ssm_reader(region, environ.get("AWS_ENDPOINT_URL") or None)
    # Whatever their shape, the secrets' values are masked in every log line
    # from the moment each is read.
    return load_settings(environ, reader, on_secret=register_secret)


def log_format(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """LOG_FORMAT, `json` or `plain`. By default JSON in Lambda; elsewhere
    none, and the host's own logging (pytest's, the local stack's) stands."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("LOG_FORMAT", "").strip().lower()
    if chosen in (JSON, PLAIN):
        return chosen
    if chosen:
        raise ConfigurationError("LOG_FORMAT must be json or plain")
    return JSON if in_lambda(environ) else None


def metrics_emitted(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether EMF lines are written: in Lambda, whose log agent turns them
    into metrics; elsewhere they would only clutter stdout. Powertools'
    POWERTOOLS_METRICS_DISABLED overrides either way."""
    environ = os.environ if environ is None else environ
    disabled = environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower()
    if disabled in ("1", "true", "yes", "on"):
        return False
    if disabled in ("0", "false", "no", "off"):
        return True
    return in_lambda(environ)
