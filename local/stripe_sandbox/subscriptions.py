"""Subscriptions and their items: /v1/subscriptions, /v1/subscription_items,
expansion, and the helpers that create, change, renew and cancel them."""
import copy
from typing import Any, Dict, List, Optional, Tuple

from local.stripe_sandbox.events import _previous_attributes
from local.stripe_sandbox.wire import (Request, Response, SandboxError, _created_matches, _expansions, _form_bool,
                                       _form_int, _form_metadata, _merge_metadata, _missing, _page, _random_id,
                                       json_response)

DEFAULT_PERIOD_SECONDS = 30 * 24 * 3600
SUBSCRIPTION_STATUSES = ("incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled",
                         "unpaid", "paused")
# Expand paths a subscription answers to ("items.data.price" is always inline).
_SUBSCRIPTION_EXPANDABLE = ("customer", "items.data.price", "items.data.price.product")

# How many items a subscription embeds in an API answer.
EMBEDDED_ITEMS = 10

# The fields of billing features the sandbox does not model (tax, discounts,
# invoicing, payment settings, schedules, Connect fees), with the values
# Stripe gives a subscription that uses none of them.
_UNMODELLED = {
    "application": None,
    "application_fee_percent": None,
    "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
    "billing_cycle_anchor_config": None,
    "billing_schedules": [],
    "billing_thresholds": None,
    "customer_account": None,
    "days_until_due": None,
    "default_payment_method": None,
    "default_source": None,
    "default_tax_rates": [],
    "description": None,
    "discounts": [],
    "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
    "latest_invoice": None,
    "next_pending_invoice_item_invoice": None,
    "on_behalf_of": None,
    "pause_collection": None,
    "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                         "save_default_payment_method": "off"},
    "pending_invoice_item_interval": None,
    "pending_setup_intent": None,
    "pending_update": None,
    "schedule": None,
    "test_clock": None,
    "transfer_data": None,
    "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
}


class Subscriptions:
    """Subscriptions, their items and their lifecycle."""

    def create_subscription(self, account_id: Optional[str], customer_id: str, products: List[str],
                            status: str = "active", period_end: Optional[int] = None,
                            period_start: Optional[int] = None, metadata: Optional[Dict[str, str]] = None,
                            cancel_at_period_end: bool = False, cancel_at: Optional[int] = None,
                            id: Optional[str] = None) -> Dict[str, Any]:
        """A subscription of customer_id to products (ids on that account), one
        item and price each, every item in the period period_start (now) to
        period_end (30 days later). Records customer.subscription.created
        and bills the first period (invoices.py)."""
        with self._lock:
            scope = self._scope(account_id)
            subscription = self._add_subscription(scope, customer_id, products, status, period_start, period_end,
                                                  metadata, cancel_at_period_end, cancel_at, id)
            self._record_event("customer.subscription.created", scope, self._subscription_view(scope, subscription))
            self._bill_subscription(scope, subscription, "subscription_create")
            return copy.deepcopy(subscription)

    def _add_subscription(self, scope: Optional[str], customer_id: str, products: List[str], status: str = "active",
                          period_start: Optional[int] = None, period_end: Optional[int] = None,
                          metadata: Optional[Dict[str, str]] = None, cancel_at_period_end: bool = False,
                          cancel_at: Optional[int] = None, id: Optional[str] = None,
                          created: Optional[int] = None) -> Dict[str, Any]:
        """Stores a new subscription, made at `created` (now), and records no
        event and bills nothing: create_subscription does those, the pre-load
        does neither."""
        customer = self._customer_or_raise(scope, customer_id)
        if customer.get("deleted"):
            raise ValueError("customer %s is deleted" % customer_id)
        if isinstance(products, str):
            products = [products]
        product_ids = list(dict.fromkeys(products))
        if not product_ids:
            raise ValueError("a subscription needs at least one product")
        for product_id in product_ids:
            self._product_or_raise(scope, product_id)
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError("unknown subscription status %r" % status)
        subscription_id = id or _random_id("sub_", 14)
        if self._find_subscription(subscription_id) is not None:
            raise ValueError("subscription %s already exists" % subscription_id)
        now = int(self.now()) if created is None else int(created)
        start = now if period_start is None else int(period_start)
        end = start + DEFAULT_PERIOD_SECONDS if period_end is None else int(period_end)
        canceled = status == "canceled"
        trialing = status == "trialing"
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            **copy.deepcopy(_UNMODELLED),
            "billing_cycle_anchor": start,
            # API versions since 2025-09-30 create subscriptions in flexible mode.
            "billing_mode": {"flexible": {"proration_discounts": "included"}, "type": "flexible",
                             "updated_at": now},
            "cancel_at": None if cancel_at is None else int(cancel_at),
            "cancel_at_period_end": bool(cancel_at_period_end) and not canceled,
            "canceled_at": now if cancel_at_period_end or canceled else None,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": "usd",
            "customer": customer_id,
            "ended_at": now if canceled else None,
            "items": _item_list(subscription_id, [
                self._new_item(scope, subscription_id, product_id, start, end) for product_id in product_ids]),
            "livemode": self._livemode(scope),
            "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
            "start_date": start,
            "status": status,
            "trial_end": end if trialing else None,
            "trial_start": start if trialing else None,
        }
        for item in subscription["items"]["data"]:
            item["created"] = now
        self._subscriptions.setdefault(scope, {})[subscription_id] = subscription
        return subscription

    def update_subscription(self, account_id: Optional[str], subscription_id: str,
                            **changes: Any) -> Dict[str, Any]:
        """Changes status, cancel_at_period_end, cancel_at, metadata (merged:
        "" deletes a key), products (the new item set), period_end (of every
        item) or cancellation_details (comment, feedback, reason). Records
        customer.subscription.updated with previous_attributes, or .paused /
        .resumed when the status enters or leaves paused."""
        with self._lock:
            return self._update_subscription(self._scope(account_id), subscription_id, changes)

    def renew_subscription(self, account_id: Optional[str], subscription_id: str,
                           period_end: Optional[int] = None, paid: bool = True) -> Dict[str, Any]:
        """The current period ended: every item's next period starts at the old
        end and lasts as long (or ends at period_end), and the new period is
        billed. One set to cancel at that moment (by cancel_at_period_end or
        cancel_at) is canceled instead, as Stripe does.

        When the renewal is paid, past_due, unpaid and trialing become
        active and the new invoice is paid. A subscription's status follows
        its latest invoice, so invoices left open before stay open, as
        Stripe's do until their own retries settle them (pay_open_invoices).
        With paid=False the renewal charge fails and Stripe's settings leave
        the subscription past_due: an active, trialing or past_due one
        becomes (or stays) past_due and the new invoice is open, recording
        invoice.payment_failed first.
        Records customer.subscription.updated; returns the subscription."""
        with self._lock:
            scope = self._scope(account_id)
            subscription = self._subscription_or_raise(scope, subscription_id)
            if subscription["status"] in ("canceled", "incomplete_expired"):
                raise ValueError("subscription %s has ended" % subscription_id)
            old_end = _period_end(subscription)
            if subscription["cancel_at_period_end"] or (
                    subscription["cancel_at"] is not None and subscription["cancel_at"] <= old_end):
                return self._cancel_subscription(scope, subscription_id)
            if period_end is not None and int(period_end) <= old_end:
                raise ValueError("the next period must end after the current one (%d)" % old_end)
            if not paid and subscription["status"] not in ("active", "trialing", "past_due"):
                # Stripe charges none of these at renewal: unpaid leaves its
                # invoices in draft, paused and incomplete ones issue none.
                raise ValueError("subscription %s is %s: Stripe does not charge it at renewal"
                                 % (subscription_id, subscription["status"]))
            changed = copy.deepcopy(subscription)
            for item in changed["items"]["data"]:
                start, end = item["current_period_start"], item["current_period_end"]
                item["current_period_start"] = end
                item["current_period_end"] = int(period_end) if period_end is not None else end + (end - start)
            if not paid:
                changed["status"] = "past_due"
            elif changed["status"] in ("past_due", "unpaid", "trialing"):
                changed["status"] = "active"
            old_start = min(item["current_period_start"] for item in subscription["items"]["data"])
            # The new period is billed as it begins: a failed charge's
            # invoice.payment_failed comes before the subscription's update.
            invoice = self._bill_subscription(scope, changed, "subscription_cycle",
                                              looks_back={"start": old_start, "end": old_end}, paid=paid)
            if not paid:
                self._charge_failed(scope, invoice)
            return self._store_update(scope, subscription, changed)

    def cancel_subscription(self, account_id: Optional[str], subscription_id: str) -> Dict[str, Any]:
        """Cancels now. Records customer.subscription.deleted."""
        with self._lock:
            return self._cancel_subscription(self._scope(account_id), subscription_id)

    def forget_subscription(self, account_id: Optional[str], subscription_id: str) -> None:
        """Removes the subscription entirely (retrieving it answers 404), without an event."""
        with self._lock:
            scope = self._scope(account_id)
            self._subscription_or_raise(scope, subscription_id)
            del self._subscriptions[scope][subscription_id]

    def subscription(self, account_id: Optional[str], subscription_id: str) -> Dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._subscription_or_raise(self._scope(account_id), subscription_id))

    def subscriptions(self, account_id: Optional[str]) -> List[Dict[str, Any]]:
        """The account's subscriptions, oldest first, canceled ones included."""
        with self._lock:
            return copy.deepcopy(list(self._subscriptions.get(self._scope(account_id), {}).values()))

    def _subscription_or_raise(self, scope: Optional[str], subscription_id: str) -> Dict[str, Any]:
        try:
            return self._subscriptions.get(scope, {})[subscription_id]
        except KeyError:
            raise KeyError("no subscription %s on %s" % (subscription_id, scope or "the platform")) from None

    def _find_subscription(self, subscription_id: str) -> Optional[Tuple[Optional[str], Dict[str, Any]]]:
        for scope, subscriptions in self._subscriptions.items():
            if subscription_id in subscriptions:
                return scope, subscriptions[subscription_id]
        return None

    def _new_item(self, scope: Optional[str], subscription_id: str, product_id: str, start: int,
                  end: int) -> Dict[str, Any]:
        return {
            "id": _random_id("si_", 14),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": int(self.now()),
            "current_period_end": end,
            "current_period_start": start,
            "discounts": [],
            "metadata": {},
            "plan": self._plan_for(scope, product_id),
            "price": copy.deepcopy(self._price_for(scope, product_id)),
            "quantity": 1,
            "subscription": subscription_id,
            "tax_rates": [],
        }

    def _update_subscription(self, scope: Optional[str], subscription_id: str, changes: Dict[str, Any],
                             request: Optional[Request] = None) -> Dict[str, Any]:
        subscription = self._subscription_or_raise(scope, subscription_id)
        order = ("status", "cancel_at_period_end", "cancel_at", "metadata", "products", "period_end",
                 "cancellation_details")
        unknown = sorted(set(changes) - set(order))
        if unknown:
            raise ValueError("a subscription's %s cannot be changed here" % ", ".join(unknown))
        changed = copy.deepcopy(subscription)
        now = int(self.now())
        for name in (n for n in order if n in changes):
            value = changes[name]
            if name == "status":
                if value not in SUBSCRIPTION_STATUSES:
                    raise ValueError("unknown subscription status %r" % value)
                if value == "canceled" and changed["status"] != "canceled":
                    raise ValueError("cancel a subscription with cancel_subscription")
                changed["status"] = value
            elif name == "cancel_at_period_end":
                value = bool(value)
                if value != changed["cancel_at_period_end"]:
                    changed["cancel_at_period_end"] = value
                    if changed["status"] != "canceled":
                        changed["canceled_at"] = now if value else None
            elif name == "cancel_at":
                changed["cancel_at"] = None if value is None else int(value)
            elif name == "metadata":
                changed["metadata"] = _merge_metadata(changed["metadata"], value or {})
            elif name == "products":
                product_ids = list(dict.fromkeys([value] if isinstance(value, str) else value))
                if not product_ids:
                    raise ValueError("a subscription needs at least one product")
                for product_id in product_ids:
                    self._product_or_raise(scope, product_id)
                items = changed["items"]["data"]
                kept = [item for item in items if item["price"]["product"] in product_ids]
                present = {item["price"]["product"] for item in kept}
                if items:
                    start, end = items[0]["current_period_start"], items[0]["current_period_end"]
                else:
                    start, end = now, now + DEFAULT_PERIOD_SECONDS
                added = [self._new_item(scope, subscription_id, product_id, start, end)
                         for product_id in product_ids if product_id not in present]
                changed["items"] = _item_list(subscription_id, kept + added)
            elif name == "period_end":
                for item in changed["items"]["data"]:
                    item["current_period_end"] = int(value)
            elif name == "cancellation_details":
                changed["cancellation_details"] = _cancellation_details(value)
        return self._store_update(scope, subscription, changed, request)

    def _store_update(self, scope: Optional[str], subscription: Dict[str, Any], changed: Dict[str, Any],
                      request: Optional[Request] = None) -> Dict[str, Any]:
        previous = _previous_attributes(subscription, changed)
        if not previous:
            return copy.deepcopy(subscription)
        was = subscription["status"]
        subscription.clear()
        subscription.update(changed)
        status = subscription["status"]
        view = self._subscription_view(scope, subscription)
        if status == "paused" and was != "paused":
            self._record_event("customer.subscription.paused", scope, view, request=request)
        elif was == "paused" and status in ("active", "trialing"):
            self._record_event("customer.subscription.resumed", scope, view, request=request)
        else:
            self._record_event("customer.subscription.updated", scope, view,
                               previous_attributes=previous, request=request)
        return copy.deepcopy(subscription)

    def _cancel_subscription(self, scope: Optional[str], subscription_id: str,
                             request: Optional[Request] = None,
                             cancellation_details: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        subscription = self._subscription_or_raise(scope, subscription_id)
        if subscription["status"] == "canceled":
            raise ValueError("subscription %s is already canceled" % subscription_id)
        now = int(self.now())
        subscription["status"] = "canceled"
        subscription["canceled_at"] = subscription["canceled_at"] or now
        subscription["ended_at"] = now
        subscription["cancel_at_period_end"] = False
        if cancellation_details is not None:
            subscription["cancellation_details"] = _cancellation_details(cancellation_details)
        self._record_event("customer.subscription.deleted", scope, self._subscription_view(scope, subscription),
                           request=request)
        return copy.deepcopy(subscription)

    # API

    def _scoped_subscription(self, request: Request, subscription_id: str, param: str = "id") -> Dict[str, Any]:
        subscription = self._subscriptions.get(request.stripe_account, {}).get(subscription_id)
        if subscription is None:
            raise _missing("subscription", subscription_id, param)
        return subscription

    def _expand_subscription(self, scope: Optional[str], subscription: Dict[str, Any], paths: List[str],
                             prefix: str = "") -> Dict[str, Any]:
        _check_expandable(paths, prefix)
        view = copy.deepcopy(subscription)
        # Like Stripe, an answer embeds the first items only; the rest are
        # listed at /v1/subscription_items.
        items = view["items"]
        items["has_more"] = len(items["data"]) > EMBEDDED_ITEMS
        items["data"] = items["data"][:EMBEDDED_ITEMS]
        if "customer" in paths:
            customer = self._customers.get(scope, {}).get(view["customer"])
            if customer is not None:
                view["customer"] = copy.deepcopy(customer)
        if "items.data.price.product" in paths:
            for item in view["items"]["data"]:
                product = self._products.get(scope, {}).get(item["price"]["product"])
                if product is not None:
                    item["price"]["product"] = copy.deepcopy(product)
        return view

    def _subscription_view(self, scope: Optional[str], subscription: Dict[str, Any]) -> Dict[str, Any]:
        """The subscription as an unexpanded API answer, and as an event carries it."""
        return self._expand_subscription(scope, subscription, [])

    def _api_retrieve_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._scoped_subscription(request, subscription_id)
        return json_response(self._expand_subscription(request.stripe_account, subscription,
                                                       _expansions(request.query)))

    def _api_list_subscriptions(self, request: Request) -> Response:
        params = request.query
        paths = []
        for path in _expansions(params):
            if not path.startswith("data."):
                raise SandboxError(400, "This property cannot be expanded (%s). You may want to try expanding "
                                   "'data.%s' instead." % (path, path))
            paths.append(path[len("data."):])
        _check_expandable(paths, "data.")
        subscriptions = list(reversed(list(self._subscriptions.get(request.stripe_account, {}).values())))
        status = params.get("status")
        if status is None:
            subscriptions = [s for s in subscriptions if s["status"] != "canceled"]
        elif status == "ended":
            subscriptions = [s for s in subscriptions if s["status"] in ("canceled", "incomplete_expired")]
        elif status != "all":
            subscriptions = [s for s in subscriptions if s["status"] == status]
        if params.get("customer"):
            if params["customer"] not in self._customers.get(request.stripe_account, {}):
                raise _missing("customer", params["customer"], "customer")
            subscriptions = [s for s in subscriptions if s["customer"] == params["customer"]]
        if params.get("price"):
            if all(p["id"] != params["price"] for p in self._prices.get(request.stripe_account, {}).values()):
                raise _missing("price", params["price"], "price")
            subscriptions = [s for s in subscriptions
                             if any(i["price"]["id"] == params["price"] for i in s["items"]["data"])]
        subscriptions = [s for s in subscriptions if _created_matches(s["created"], params.get("created"))]
        page = _page(subscriptions, params, "/v1/subscriptions", "subscription")
        page["data"] = [self._expand_subscription(request.stripe_account, s, paths, "data.") for s in page["data"]]
        return json_response(page)

    def _api_list_subscription_items(self, request: Request) -> Response:
        params = request.query
        subscription = self._scoped_subscription(request, params["subscription"], "subscription")
        paths = _expansions(params)
        for path in paths:
            if path != "data.price.product":
                raise SandboxError(400, "This property cannot be expanded (%s)." % path)
        page = _page(subscription["items"]["data"], params,
                     "/v1/subscription_items", "subscription_item")
        page["data"] = copy.deepcopy(page["data"])
        if paths:
            for item in page["data"]:
                product = self._products.get(request.stripe_account, {}).get(item["price"]["product"])
                if product is not None:
                    item["price"]["product"] = copy.deepcopy(product)
        return json_response(page)

    def _api_update_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._scoped_subscription(request, subscription_id)
        params = request.params
        paths = _expansions(params)
        _check_expandable(paths)
        changes: Dict[str, Any] = {}
        if "cancel_at_period_end" in params:
            changes["cancel_at_period_end"] = _form_bool(params["cancel_at_period_end"], "cancel_at_period_end")
        if "cancel_at" in params:
            value = params["cancel_at"]
            if value == "":
                changes["cancel_at"] = None
            elif value == "min_period_end":
                changes["cancel_at"] = min(i["current_period_end"] for i in subscription["items"]["data"])
            elif value == "max_period_end":
                changes["cancel_at"] = _period_end(subscription)
            else:
                changes["cancel_at"] = _form_int(value, "cancel_at")
        if "metadata" in params:
            changes["metadata"] = _form_metadata(params["metadata"], subscription["metadata"])
        if subscription["status"] == "canceled" and set(changes) - {"metadata"}:
            raise SandboxError(400, "A canceled subscription can only update its cancellation_details and "
                               "metadata.")
        updated = self._update_subscription(request.stripe_account, subscription_id, changes, request=request)
        return json_response(self._expand_subscription(request.stripe_account, updated, paths))

    def _api_cancel_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._scoped_subscription(request, subscription_id)
        paths = _expansions(request.params)
        _check_expandable(paths)
        if subscription["status"] == "canceled":
            # Stripe treats a canceled subscription as gone for this call.
            raise _missing("subscription", subscription_id)
        canceled = self._cancel_subscription(request.stripe_account, subscription_id, request=request)
        return json_response(self._expand_subscription(request.stripe_account, canceled, paths))


def _item_list(subscription_id: str, items: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"object": "list", "data": items, "has_more": False,
            "url": "/v1/subscription_items?subscription=%s" % subscription_id}


def _cancellation_details(value: Dict[str, Any]) -> Dict[str, Any]:
    """Stripe's cancellation_details: why it was canceled (reason) and what
    the customer said (feedback, one of Stripe's options, and comment)."""
    return {"comment": value.get("comment"), "feedback": value.get("feedback"), "reason": value.get("reason")}


def _period_end(subscription: Dict[str, Any]) -> int:
    """The latest current_period_end of the subscription's items."""
    return max((item["current_period_end"] for item in subscription["items"]["data"]), default=0)


def _check_expandable(paths: List[str], prefix: str = "") -> None:
    for path in paths:
        if path not in _SUBSCRIPTION_EXPANDABLE:
            raise SandboxError(400, "This property cannot be expanded (%s)." % (prefix + path))
