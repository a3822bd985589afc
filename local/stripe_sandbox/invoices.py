"""Invoices: the one a subscription is billed when it starts and at each
renewal, shown in the billing portal and served by GET /v1/invoices and
/v1/invoices/{id}. The sandbox takes no payment: an invoice is paid when it
is made unless the subscription's status says the payment is still owed.
Of the invoice events it records one: invoice.payment_failed, when a
renewal's or a later charge fails; the others (created, finalized, paid)
are not modelled."""
import copy
import hashlib
from typing import Any, Dict, List, Optional

from local.stripe_sandbox.wire import Request, Response, _created_matches, _missing, _page, _random_id, json_response

# What the first invoice of a subscription created in these statuses is;
# any other status is paid.
_UNPAID_STATUS = {"incomplete": "open", "past_due": "open", "unpaid": "open", "incomplete_expired": "void"}
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")

# The fields of billing features the sandbox does not model (tax, discounts,
# credit notes, shipping, custom fields, Connect, test clocks), with the
# values Stripe gives a subscription invoice that uses none of them.
# confirmation_secret and payments are left out: Stripe sends them only
# when asked to expand them.
_UNMODELLED = {
    "account_tax_ids": None,
    "application": None,
    "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                      "status": None},
    "automatically_finalizes_at": None,
    "custom_fields": None,
    "customer_account": None,
    "customer_address": None,
    "customer_phone": None,
    "customer_shipping": None,
    "customer_tax_exempt": "none",
    "customer_tax_ids": [],
    "default_source": None,
    "default_tax_rates": [],
    "discounts": [],
    "footer": None,
    "from_invoice": None,
    "issuer": {"type": "self"},
    "last_finalization_error": None,
    "latest_revision": None,
    "on_behalf_of": None,
    "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
    "post_payment_credit_notes_amount": 0,
    "pre_payment_credit_notes_amount": 0,
    "receipt_number": None,
    "rendering": None,
    "shipping_cost": None,
    "shipping_details": None,
    "statement_descriptor": None,
    "test_clock": None,
    "threshold_reason": None,
    "total_discount_amounts": [],
    "total_pretax_credit_amounts": [],
    "total_taxes": [],
}


class Invoices:
    """Subscription invoices, on an account or on the platform."""

    def invoices(self, account_id: Optional[str], customer: Optional[str] = None,
                 subscription: Optional[str] = None, status: Optional[str] = None) -> List[Dict[str, Any]]:
        """The account's invoices, oldest first, optionally of one customer,
        subscription or status."""
        with self._lock:
            return copy.deepcopy(self._invoices_of(self._scope(account_id), customer, subscription, status))

    def _invoices_of(self, scope: Optional[str], customer: Optional[str] = None,
                     subscription: Optional[str] = None, status: Optional[str] = None) -> List[Dict[str, Any]]:
        # By created, and those made in the same second in the order made
        # (sorted is stable): a backdated invoice takes its place in time.
        return [i for i in sorted(self._invoices.get(scope, {}).values(), key=lambda i: i["created"])
                if (customer is None or i["customer"] == customer)
                and (subscription is None or _subscription_of(i) == subscription)
                and (status is None or i["status"] == status)]

    def _bill_subscription(self, scope: Optional[str], subscription: Dict[str, Any], billing_reason: str,
                           looks_back: Optional[Dict[str, int]] = None, paid: bool = True) -> Dict[str, Any]:
        """The invoice for the subscription's current period. Like Stripe's, its
        own period_start and period_end look back one period (the moment of
        creation for the first invoice); each line carries the period it pays for.
        The first invoice's status follows the status the subscription starts
        in; a later one is paid, or left open when `paid` says its charge failed."""
        now = int(self.now())
        invoice_id = _random_id("in_", 24)
        trialing = subscription["status"] == "trialing"
        lines = []
        for item in subscription["items"]["data"]:
            price = item["price"]
            quantity = item.get("quantity") or 1
            amount = 0 if trialing else int(price.get("unit_amount") or 0) * quantity
            name = self._products.get(scope, {}).get(price["product"], {}).get("name") or price["product"]
            lines.append({
                "id": _random_id("il_", 24),
                "object": "line_item",
                "amount": amount,
                "currency": price.get("currency", "usd"),
                "description": ("Trial period for %s" % name if trialing else "%d \u00d7 %s (at %s / %s)" % (
                    quantity, name, _amount(int(price.get("unit_amount") or 0), price.get("currency", "usd")),
                    (price.get("recurring") or {}).get("interval", "month"))),
                "discount_amounts": [],
                "discountable": True,
                "discounts": [],
                "invoice": invoice_id,
                "livemode": subscription["livemode"],
                "metadata": {},
                "parent": {"type": "subscription_item_details", "invoice_item_details": None,
                           "subscription_item_details": {"invoice_item": None, "proration": False,
                                                         "proration_details": {"credited_items": None},
                                                         "subscription": subscription["id"],
                                                         "subscription_item": item["id"]}},
                "period": {"start": item["current_period_start"], "end": item["current_period_end"]},
                "pretax_credit_amounts": [],
                "pricing": {"type": "price_details",
                            "price_details": {"price": price["id"], "product": price["product"]},
                            "unit_amount_decimal": str(price.get("unit_amount") or 0)},
                "quantity": quantity,
                "subtotal": amount,
                "taxes": [],
            })
        total = sum(line["amount"] for line in lines)
        if billing_reason == "subscription_create":
            status = _UNPAID_STATUS.get(subscription["status"], "paid")
        else:
            status = "paid" if paid else "open"
        paid = status == "paid"
        customer = self._customers.get(scope, {}).get(subscription["customer"], {})
        account = self._accounts.get(scope or "", {})
        looks_back = looks_back or {"start": now, "end": now}
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            **copy.deepcopy(_UNMODELLED),
            "account_country": account.get("country", "US"),
            "account_name": ((account.get("settings") or {}).get("dashboard", {}).get("display_name")
                             or (account.get("business_profile") or {}).get("name") or self.platform_name),
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid or status == "void" else total,
            "amount_shipping": 0,
            "attempt_count": 1,
            "attempted": True,
            "auto_advance": status == "open",
            "billing_reason": billing_reason,
            "collection_method": subscription.get("collection_method", "charge_automatically"),
            "created": now,
            "currency": subscription.get("currency", "usd"),
            "customer": subscription["customer"],
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "default_payment_method": None,
            "description": None,
            "due_date": None,
            "effective_at": now,
            "ending_balance": 0,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            # Stripe's own answers also carry total_count here, which
            # stripe-python's ListObject does not declare: left out.
            "lines": {"object": "list", "data": lines, "has_more": False,
                      "url": "/v1/invoices/%s/lines" % invoice_id},
            "livemode": subscription["livemode"],
            "metadata": {},
            "next_payment_attempt": None,
            "number": self._next_invoice_number(scope, subscription["customer"]),
            "parent": {"type": "subscription_details", "quote_details": None,
                       "subscription_details": {"metadata": dict(subscription.get("metadata") or {}),
                                                "subscription": subscription["id"],
                                                "subscription_proration_date": None}},
            "period_end": looks_back["end"],
            "period_start": looks_back["start"],
            "starting_balance": 0,
            "status": status,
            "status_transitions": {"finalized_at": now, "marked_uncollectible_at": None,
                                   "paid_at": now if paid else None, "voided_at": now if status == "void" else None},
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "total": total,
            "total_excluding_tax": total,
            # With no invoice webhooks to send, Stripe sets it as it makes the invoice.
            "webhooks_delivered_at": now,
        }
        self._invoices.setdefault(scope, {})[invoice_id] = invoice
        return copy.deepcopy(invoice)

    def _charge_failed(self, scope: Optional[str], invoice: Dict[str, Any]) -> None:
        """The invoice's charge was declined, as Stripe announces it."""
        self._record_event("invoice.payment_failed", scope, invoice)

    def _next_invoice_number(self, scope: Optional[str], customer_id: str) -> str:
        # Stripe numbers a customer's invoices PREFIX-0001, PREFIX-0002, ...
        # with a prefix of the customer's own.
        customer = self._customers.get(scope, {}).get(customer_id, {})
        prefix = customer.get("invoice_prefix") or hashlib.sha256(customer_id.encode()).hexdigest()[:8].upper()
        count = self._invoice_counts.get((scope, customer_id), 0) + 1
        self._invoice_counts[(scope, customer_id)] = count
        return "%s-%04d" % (prefix, count)

    # falling behind on payment, and catching up

    def fail_payment(self, account_id: Optional[str], subscription_id: str) -> Dict[str, Any]:
        """A charge on an active subscription fails and Stripe's settings leave
        it past_due: it gets an open invoice, made now, for its current period
        (billing_reason subscription_update, as when a change made mid-period
        is invoiced and its payment fails), and its period does not move.
        Records invoice.payment_failed, then customer.subscription.updated;
        returns the subscription."""
        with self._lock:
            scope = self._scope(account_id)
            subscription = self._subscription_or_raise(scope, subscription_id)
            if subscription["status"] != "active":
                raise ValueError("subscription %s is %s: only an active subscription's payment can fail here"
                                 % (subscription_id, subscription["status"]))
            self._charge_failed(scope, self._bill_subscription(scope, subscription, "subscription_update", paid=False))
            changed = copy.deepcopy(subscription)
            changed["status"] = "past_due"
            return self._store_update(scope, subscription, changed)

    def pay_open_invoices(self, account_id: Optional[str], subscription_id: str) -> Dict[str, Any]:
        """Every open invoice of the subscription is paid now, as when Stripe's
        retries of them succeed (the customer's card works again). With its
        latest invoice paid, a past_due or unpaid subscription becomes
        active, recording customer.subscription.updated. Returns the
        subscription."""
        with self._lock:
            scope = self._scope(account_id)
            subscription = self._subscription_or_raise(scope, subscription_id)
            owed = self._invoices_of(scope, subscription=subscription_id, status="open")
            if not owed:
                raise ValueError("subscription %s has no open invoice" % subscription_id)
            now = int(self.now())
            for invoice in owed:
                _settle(invoice, now)
            if subscription["status"] not in ("past_due", "unpaid"):
                return copy.deepcopy(subscription)
            changed = copy.deepcopy(subscription)
            changed["status"] = "active"
            return self._store_update(scope, subscription, changed)

    def backdate_invoice(self, account_id: Optional[str], invoice_id: str, created: int) -> Dict[str, Any]:
        """Moves the invoice's making to `created`, a moment not after now,
        with its finalization (and its payment, if it was paid as it was
        made): how a test gets an invoice open for weeks without waiting.
        Lists then put it in its new place. Returns the invoice."""
        with self._lock:
            scope = self._scope(account_id)
            invoice = self._invoices.get(scope, {}).get(invoice_id)
            if invoice is None:
                raise KeyError("no invoice %s on %s" % (invoice_id, scope or "the platform"))
            created = int(created)
            if created > self.now():
                raise ValueError("an invoice cannot be made in the future (%d)" % created)
            was = invoice["created"]
            moments = [(invoice, "created"), (invoice, "effective_at"), (invoice, "webhooks_delivered_at")]
            moments += [(invoice["status_transitions"], name) for name in ("finalized_at", "paid_at", "voided_at")]
            for holder, name in moments:
                if holder[name] == was:
                    holder[name] = created
            return copy.deepcopy(invoice)

    # API

    def _api_list_invoices(self, request: Request) -> Response:
        params, scope = request.query, request.stripe_account
        # As the subscriptions list does: an id the account does not have is
        # refused, not answered with an empty list.
        for kind, store in (("customer", self._customers), ("subscription", self._subscriptions)):
            if params.get(kind) and params[kind] not in store.get(scope, {}):
                raise _missing(kind, params[kind], kind)
        everything = list(reversed(self._invoices_of(scope)))
        invoices = [i for i in everything
                    if (not params.get("customer") or i["customer"] == params["customer"])
                    and (not params.get("subscription") or _subscription_of(i) == params["subscription"])
                    and (not params.get("status") or i["status"] == params["status"])
                    and (not params.get("collection_method") or i["collection_method"] == params["collection_method"])
                    and _created_matches(i["created"], params.get("created"))]
        return json_response(_page(invoices, params, "/v1/invoices", "invoice", order=everything))

    def _api_retrieve_invoice(self, request: Request, invoice_id: str) -> Response:
        invoice = self._invoices.get(request.stripe_account, {}).get(invoice_id)
        if invoice is None:
            raise _missing("invoice", invoice_id)
        return json_response(invoice)


def _settle(invoice: Dict[str, Any], at: int) -> None:
    invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0, auto_advance=False)
    invoice["status_transitions"]["paid_at"] = at


def _subscription_of(invoice: Dict[str, Any]) -> Optional[str]:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription")


def _amount(cents: int, currency: str) -> str:
    return ("$%d.%02d" if currency == "usd" else "%d.%02d " + currency.upper()) % divmod(cents, 100)
