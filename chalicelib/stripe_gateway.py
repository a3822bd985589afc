"""The only module that imports stripe: OAuth, accounts, the billing portal
and webhook checks. Every request the client makes goes through
stripe_ceiling.StripeTraffic (the shared ceiling, and retries after a 429)."""
import copy
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import stripe
from stripe.oauth_error import OAuthError

from chalicelib import clock
from chalicelib.access import is_stripe_id, is_unix_time, items_of, user_named_by
from chalicelib.errors import (AccountNotConnected, CustomerGone, InvalidPayload, InvalidSignature,
                               PortalConfigurationGone, StripeFailure)
from chalicelib.stripe_ceiling import LONGEST_BACKOFF_SECONDS, LONGEST_WAIT_SECONDS, Response, StripeTraffic

# The API version every request speaks is the one the pinned library pins;
# saying it here makes a library upgrade that moves it a visible change.
API_VERSION = "2026-10-28.endive"
WEBHOOK_TOLERANCE_SECONDS = 300
# How long one request waits for Stripe's answer (STRIPE_TIMEOUT_SECONDS).
# The client tries a request up to 1 + MAX_NETWORK_RETRIES times, so a Stripe
# that hangs holds a caller about three times this, plus the back-off between.
HTTP_TIMEOUT_SECONDS = 8
MAX_NETWORK_RETRIES = 2
# stripe-python sleeps 0.5 s before its first retry and up to 1 s before the second.
RETRY_BACKOFF_SECONDS = 1.5
MAX_LIST_LIMIT = 100
# Customer and product metadata name the CustomerHub user and product: one
# read of the subscription gets both.
SUBSCRIPTION_EXPANSIONS = ["customer", "items.data.price.product"]
# On a list Stripe counts `data` as a level and expands at most four:
# data.items.data.price.product is refused, so an import reads products apart.
LISTED_SUBSCRIPTION_EXPANSIONS = ["data.customer"]


@dataclass(frozen=True)
class Page:
    """One page of a Stripe list, as plain dicts."""
    data: List[Dict[str, Any]]
    has_more: bool

    @property
    def last_id(self) -> Optional[str]:
        return self.data[-1]["id"] if self.data else None


@dataclass(frozen=True)
class AuthorizedAccount:
    account_id: str
    livemode: bool


@dataclass(frozen=True)
class AccountProfile:
    account_id: str
    display_name: str


@dataclass(frozen=True)
class StripeCustomer:
    customer_id: str
    # metadata.customerhub_user_id, or None when the customer names nobody.
    user_id: Optional[str]


def longest_call_seconds(timeout: float) -> float:
    """How long one call may hold its caller when Stripe hangs: every attempt
    waits out the timeout, with the client's back-off between them; before
    that it may wait for its slot under the ceiling, and after 429s."""
    return (timeout * (1 + MAX_NETWORK_RETRIES) + RETRY_BACKOFF_SECONDS
            + LONGEST_WAIT_SECONDS + LONGEST_BACKOFF_SECONDS)


class PacedRequestsClient(stripe.RequestsClient):
    """stripe-python's HTTP client, each of whose requests (its own retries
    included) goes through StripeTraffic. A 429 that comes back from there
    was retried as often as it will be: it is marked so that stripe-python
    does not try it again on Stripe-Should-Retry."""

    def __init__(self, traffic: StripeTraffic, timeout: float):
        super().__init__(timeout=timeout)
        self._traffic = traffic

    def request(self, method, url, headers, post_data=None):
        return _final(self._traffic.send(method, url, lambda: super(PacedRequestsClient, self).request(
            method, url, headers, post_data)))

    def request_stream(self, method, url, headers, post_data=None):
        return _final(self._traffic.send(method, url, lambda: super(PacedRequestsClient, self).request_stream(
            method, url, headers, post_data)))


def _final(response: Response) -> Response:
    if response[1] == 429:
        response[2]["Stripe-Should-Retry"] = "false"
    return response


def make_client(secret_key: str, client_id: str, api_base: str, connect_base: str,
                timeout: float = HTTP_TIMEOUT_SECONDS,
                traffic: Optional[StripeTraffic] = None) -> "stripe.StripeClient":
    """The client; without `traffic`, requests are not paced (an operator's
    tool, a test of something else) but a 429 is still retried."""
    return stripe.StripeClient(
        secret_key,
        client_id=client_id,
        stripe_version=API_VERSION,
        base_addresses={"api": api_base, "connect": connect_base},
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=PacedRequestsClient(traffic or StripeTraffic(), timeout),
    )


def display_name_of(account: Dict[str, Any]) -> str:
    """The name the connector card shows: the dashboard's display name, else
    the business name, else the email, else the id."""
    dashboard = ((account.get("settings") or {}).get("dashboard") or {})
    business = account.get("business_profile") or {}
    for candidate in (dashboard.get("display_name"), business.get("name"), account.get("email")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return account["id"]


class StripeGateway:
    # The client's type is named in quotes: stripe loads StripeClient and
    # its services (about 20 ms) on first use, which is then the first
    # construction of a client, not the import of every function (the
    # stream's announce_access never talks to Stripe).
    def __init__(self, client: "stripe.StripeClient", webhook_secret: str):
        self._client = client
        self._webhook_secret = webhook_secret

    def authorize_url(self, state: str, redirect_uri: str, email: Optional[str] = None,
                      landing: Optional[str] = None, always_prompt: Optional[bool] = None) -> str:
        params: Dict[str, Any] = {"response_type": "code", "scope": "read_write",
                                  "state": state, "redirect_uri": redirect_uri}
        if email:
            params["stripe_user"] = {"email": email}
        if landing:
            params["stripe_landing"] = landing
        if always_prompt is not None:
            # Given, it is passed on, false included: the URL says what the admin asked for.
            params["always_prompt"] = "true" if always_prompt else "false"
        return self._client.oauth.authorize_url(params)

    def exchange_code(self, code: str) -> AuthorizedAccount:
        try:
            token = self._client.oauth.token({"grant_type": "authorization_code", "code": code})
        except OAuthError as exc:
            # Stripe's description of a refused code quotes the code, which
            # must reach no log: only the error's name is kept, and the
            # original (whose text would show in a traceback) is dropped.
            raise StripeFailure("Stripe refused the authorization code (%s)" % exc.code) from None
        except stripe.StripeError as exc:
            raise StripeFailure("Stripe refused the authorization code: %s" % _describe(exc)) from exc
        # The response also holds access and refresh tokens; the platform key
        # with Stripe-Account is all we act with, so they are dropped here.
        return AuthorizedAccount(account_id=token.stripe_user_id, livemode=bool(token.livemode))

    def deauthorize(self, account_id: str) -> None:
        try:
            self._client.oauth.deauthorize({"stripe_user_id": account_id})
        except stripe.oauth_error.InvalidClientError as exc:
            # Stripe answers invalid_client both for an account that is not
            # connected and for a wrong platform key or client id; only the
            # first lets a disconnect go ahead.
            if "not connected" in (getattr(exc, "description", None) or str(exc)):
                raise AccountNotConnected("Stripe says %s is not connected" % account_id) from exc
            raise StripeFailure("Stripe refused the deauthorization of %s: %s"
                                % (account_id, _describe(exc))) from exc
        except stripe.StripeError as exc:
            raise StripeFailure("Stripe did not deauthorize %s: %s" % (account_id, _describe(exc))) from exc

    def account_profile(self, account_id: str) -> AccountProfile:
        try:
            account = self._client.v1.accounts.retrieve(account_id)
        except stripe.PermissionError as exc:
            raise AccountNotConnected("Stripe gives no access to %s" % account_id) from exc
        except stripe.StripeError as exc:
            raise StripeFailure("Stripe did not return account %s: %s" % (account_id, _describe(exc))) from exc
        return AccountProfile(account_id=account.id, display_name=display_name_of(account.to_dict()))

    def create_portal_configuration(self, account_id: str, params: Dict[str, Any]) -> str:
        try:
            configuration = self._client.v1.billing_portal.configurations.create(
                params, {"stripe_account": account_id})
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not create a portal configuration on %s" % account_id) from exc
        return configuration.id

    def update_portal_configuration(self, account_id: str, configuration_id: str,
                                    params: Dict[str, Any]) -> str:
        try:
            configuration = self._client.v1.billing_portal.configurations.update(
                configuration_id, params, {"stripe_account": account_id})
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                raise PortalConfigurationGone("Stripe has no portal configuration %s on %s"
                                              % (configuration_id, account_id)) from exc
            raise _failure(exc, "Stripe did not update portal configuration %s" % configuration_id) from exc
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not update portal configuration %s" % configuration_id) from exc
        return configuration.id

    def customers_with_email(self, account_id: str, email: str) -> List[StripeCustomer]:
        # A plain list filtered by email (exact, case-sensitive at Stripe):
        # the search API is eventually consistent and would miss a customer
        # created a moment ago.
        try:
            page = self._client.v1.customers.list({"email": email, "limit": MAX_LIST_LIMIT},
                                                  {"stripe_account": account_id})
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not list the customers of %s" % account_id) from exc
        found = []
        for customer in page.data:
            found.append(StripeCustomer(customer_id=customer.id,
                                        user_id=user_named_by(customer.to_dict().get("metadata"))))
        return found

    def create_portal_session(self, account_id: str, customer_id: str, configuration_id: str,
                              return_url: str) -> str:
        """The URL of a new billing portal session for the customer."""
        try:
            session = self._client.v1.billing_portal.sessions.create(
                {"customer": customer_id, "return_url": return_url, "configuration": configuration_id},
                {"stripe_account": account_id})
        except stripe.InvalidRequestError as exc:
            if exc.param == "customer" and exc.code == "resource_missing":
                raise CustomerGone("Stripe has no customer %s on %s" % (customer_id, account_id)) from exc
            raise _failure(exc, "Stripe did not create a portal session on %s" % account_id) from exc
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not create a portal session on %s" % account_id) from exc
        return session.url

    def subscription(self, account_id: str, subscription_id: str) -> Optional[Dict[str, Any]]:
        """The subscription as Stripe has it now, with its customer and
        products expanded; None when Stripe no longer has it."""
        subscription = self._retrieve(self._client.v1.subscriptions, account_id, subscription_id,
                                      "subscription", {"expand": SUBSCRIPTION_EXPANSIONS})
        if subscription is None:
            return None
        items = subscription.get("items") or {}
        if items.get("has_more"):
            # The answer embeds the first items only: a product missing from
            # it would read as removed from the subscription.
            items["data"] = self._all_items(account_id, subscription_id)
            items["has_more"] = False
        return subscription

    def subscriptions_page(self, account_id: str, status: str, starting_after: Optional[str],
                           limit: int = MAX_LIST_LIMIT) -> Page:
        """One page of the account's subscriptions in `status`, newest first,
        customers expanded; a subscription with more items than the page
        embeds gets all of them."""
        params: Dict[str, Any] = {"status": status, "limit": limit, "expand": LISTED_SUBSCRIPTION_EXPANSIONS}
        if starting_after:
            params["starting_after"] = starting_after
        try:
            page = self._client.v1.subscriptions.list(params, {"stripe_account": account_id})
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not list the %s subscriptions of %s" % (status, account_id)) from exc
        subscriptions = [subscription.to_dict() for subscription in page.data]
        for subscription in subscriptions:
            items = subscription.get("items") or {}
            if isinstance(items, dict) and items.get("has_more"):
                items["data"] = self._all_items(account_id, subscription["id"])
                items["has_more"] = False
        return Page(subscriptions, bool(page.has_more))

    def behind_since(self, account_id: str, subscription: Dict[str, Any]) -> Optional[datetime]:
        """For a past_due subscription, when it fell behind: its oldest open
        invoice's creation. Asked of Stripe only while it is past_due."""
        if subscription.get("status") != "past_due" or not is_stripe_id(subscription.get("id")):
            return None
        created = self.oldest_open_invoice(account_id, subscription["id"])
        return None if created is None else datetime.fromtimestamp(created, tz=timezone.utc)

    def oldest_open_invoice(self, account_id: str, subscription_id: str) -> Optional[int]:
        """When the subscription's oldest unpaid (open) invoice was made, as a
        Unix time; None when it has none open."""
        params: Dict[str, Any] = {"subscription": subscription_id, "status": "open", "limit": MAX_LIST_LIMIT}
        oldest: Optional[int] = None
        try:
            while True:
                page = self._client.v1.invoices.list(params, {"stripe_account": account_id})
                for invoice in page.data:
                    created = getattr(invoice, "created", None)
                    if is_unix_time(created) and (oldest is None or created < oldest):
                        oldest = created
                if not page.has_more or not page.data:
                    return oldest
                params["starting_after"] = page.data[-1].id
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not list the open invoices of %s" % subscription_id) from exc

    def open_invoices_page(self, account_id: str, starting_after: Optional[str] = None) -> Page:
        """One page of the account's open (unpaid) invoices, newest first:
        id, created and the subscription that made it (None for another)."""
        params: Dict[str, Any] = {"status": "open", "limit": MAX_LIST_LIMIT}
        if starting_after:
            params["starting_after"] = starting_after
        try:
            page = self._client.v1.invoices.list(params, {"stripe_account": account_id})
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not list the open invoices of %s" % account_id) from exc
        return Page([{"id": invoice.id, "created": getattr(invoice, "created", None),
                      "subscription": _subscription_of_invoice(invoice)} for invoice in page.data],
                    bool(page.has_more))

    def undelivered_events(self, account_id: str, types: List[str], since: int) -> List[Dict[str, Any]]:
        """The account's events of `types` created at or after `since` that
        Stripe has not delivered (failed or still pending), oldest first."""
        params: Dict[str, Any] = {"delivery_success": False, "types": types, "created": {"gte": since},
                                  "limit": MAX_LIST_LIMIT}
        found: List[Dict[str, Any]] = []
        try:
            while True:
                page = self._client.v1.events.list(params, {"stripe_account": account_id})
                found.extend(event.to_dict() for event in page.data)
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1].id
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not list the undelivered events of %s" % account_id) from exc
        # Stripe lists newest first.
        found.reverse()
        return found

    def event(self, account_id: str, event_id: str) -> Optional[Dict[str, Any]]:
        """One of the account's events, as Stripe lists it; None when Stripe
        has none by that id (or no longer: it keeps events for 30 days)."""
        found = self._retrieve(self._client.v1.events, account_id, event_id, "event")
        if found is not None:
            # Read with Stripe-Account, an event may not say whose it is.
            found.setdefault("account", account_id)
        return found

    def webhook_endpoint_status(self, endpoint_id: str) -> Optional[str]:
        """The platform's webhook endpoint's `status` (`enabled` or
        `disabled`); None when Stripe has no such endpoint."""
        try:
            found = self._client.v1.webhook_endpoints.retrieve(endpoint_id)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing" and exc.http_status == 404:
                return None
            raise _failure(exc, "Stripe did not return webhook endpoint %s" % endpoint_id) from exc
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not return webhook endpoint %s" % endpoint_id) from exc
        return str(found.to_dict().get("status"))

    def _all_items(self, account_id: str, subscription_id: str) -> List[Dict[str, Any]]:
        params: Dict[str, Any] = {"subscription": subscription_id, "limit": MAX_LIST_LIMIT,
                                  "expand": ["data.price.product"]}
        found: List[Dict[str, Any]] = []
        try:
            while True:
                page = self._client.v1.subscription_items.list(params, {"stripe_account": account_id})
                found.extend(item.to_dict() for item in page.data)
                if not page.has_more or not page.data:
                    return found
                params["starting_after"] = page.data[-1].id
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not list the items of %s" % subscription_id) from exc

    def expand(self, account_id: str, subscription: Dict[str, Any]) -> Dict[str, Any]:
        """A subscription as an event carried it (customer and products as
        ids), with what Stripe still has of its customer and products filled
        in, as `subscription()` would have expanded them."""
        expanded = copy.deepcopy(subscription)
        # Only what could be Stripe's is looked up: the copy is the sender's.
        customer = expanded.get("customer")
        if is_stripe_id(customer):
            expanded["customer"] = self.customer(account_id, customer) or customer
        products: Dict[str, Any] = {}
        for item in items_of(expanded):
            price = item.get("price")
            product = price.get("product") if isinstance(price, dict) else None
            if is_stripe_id(product):
                if product not in products:
                    products[product] = self.product(account_id, product) or product
                price["product"] = products[product]
        return expanded

    def customer(self, account_id: str, customer_id: str) -> Optional[Dict[str, Any]]:
        """The customer (a deleted one is Stripe's stub); None when Stripe has none."""
        return self._retrieve(self._client.v1.customers, account_id, customer_id, "customer")

    def product(self, account_id: str, product_id: str) -> Optional[Dict[str, Any]]:
        return self._retrieve(self._client.v1.products, account_id, product_id, "product")

    def _retrieve(self, service: Any, account_id: str, object_id: str, kind: str,
                  params: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
        try:
            found = service.retrieve(object_id, params or {}, {"stripe_account": account_id})
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing" and exc.http_status == 404:
                return None
            raise _failure(exc, "Stripe did not return %s %s" % (kind, object_id)) from exc
        except stripe.StripeError as exc:
            raise _failure(exc, "Stripe did not return %s %s" % (kind, object_id)) from exc
        return found.to_dict()

    def verify_event(self, payload: bytes, signature_header: Optional[str]) -> Dict[str, Any]:
        """The event a webhook body carries, after checking Stripe's signature
        on the raw bytes."""
        if not signature_header:
            raise InvalidSignature("The Stripe-Signature header is missing")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPayload("The body is not UTF-8") from exc
        try:
            # The library checks the signature; the timestamp is checked
            # here, both ways, by the process's clock.
            stripe.WebhookSignature.verify_header(text, signature_header, self._webhook_secret, None)
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature("The Stripe-Signature does not verify") from exc
        signed_at = _signed_at(signature_header)
        now = clock.now_seconds()
        if signed_at < now - WEBHOOK_TOLERANCE_SECONDS:
            raise InvalidSignature("The Stripe-Signature timestamp is older than %d s" % WEBHOOK_TOLERANCE_SECONDS)
        # One from the future is as much a replay risk (a signature made
        # ahead, or a wrong clock) as an old one.
        if signed_at > now + WEBHOOK_TOLERANCE_SECONDS:
            raise InvalidSignature("The Stripe-Signature timestamp is in the future")
        try:
            event = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidPayload("The body is not JSON") from exc
        if (not isinstance(event, dict) or event.get("object") != "event"
                or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str)
                or not is_unix_time(event.get("created"))
                or not isinstance(event.get("data"), dict)):
            raise InvalidPayload("The body is not a Stripe event")
        return event


def _signed_at(signature_header: str) -> int:
    """The header's `t`, the first one as the library reads it (it verified
    the signature made with it)."""
    for part in signature_header.split(","):
        pieces = part.split("=", 2)
        if pieces[0] == "t":
            return int(pieces[1])
    raise InvalidSignature("The Stripe-Signature has no timestamp")


def _failure(exc: stripe.StripeError, what: str) -> StripeFailure:
    if isinstance(exc, stripe.PermissionError):
        return AccountNotConnected("%s: no access to the account" % what)
    return StripeFailure("%s: %s" % (what, _describe(exc)))


def _describe(exc: stripe.StripeError) -> str:
    # user_message is Stripe's text for the failure; it never holds our key.
    return getattr(exc, "user_message", None) or exc.__class__.__name__


def _subscription_of_invoice(invoice: Any) -> Optional[str]:
    """The subscription that made the invoice (its parent's subscription_details)."""
    parent = getattr(invoice, "parent", None)
    details = getattr(parent, "subscription_details", None) if parent is not None else None
    subscription = getattr(details, "subscription", None) if details is not None else None
    if subscription is not None and not isinstance(subscription, str):
        subscription = getattr(subscription, "id", None)
    return subscription if is_stripe_id(subscription) else None
