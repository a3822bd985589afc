"""Card payment methods: Stripe's test cards and what each does when it is
saved, the payment method a customer's invoices are charged to
(``invoice_settings.default_payment_method``)."""
import copy
import hashlib
import re
import time
from typing import Any, Dict, NamedTuple, Optional

from local.stripe_sandbox.wire import _random_id

TESTING_URL = "https://docs.stripe.com/testing"


class _TestCard(NamedTuple):
    brand: str
    funding: str
    # (code, decline_code, message) when saving the card fails
    refusal: Optional[tuple] = None
    # Saved, and every charge on it fails
    declines_charges: bool = False


_DECLINED = "Your card was declined."
# Stripe's test card numbers. Saving a card checks it with the issuer, so
# the ones that decline a payment decline here too, except 4000000000000341,
# which Stripe lets a customer save and declines only when it is charged.
TEST_CARDS: Dict[str, _TestCard] = {
    "4242424242424242": _TestCard("visa", "credit"),
    "4000056655665556": _TestCard("visa", "debit"),
    "5555555555554444": _TestCard("mastercard", "credit"),
    "2223003122003222": _TestCard("mastercard", "credit"),
    "5200828282828210": _TestCard("mastercard", "debit"),
    "5105105105105100": _TestCard("mastercard", "prepaid"),
    "378282246310005": _TestCard("amex", "credit"),
    "371449635398431": _TestCard("amex", "credit"),
    "6011111111111117": _TestCard("discover", "credit"),
    "3056930009020004": _TestCard("diners", "credit"),
    "3566002020360505": _TestCard("jcb", "credit"),
    "6200000000000005": _TestCard("unionpay", "credit"),
    "4000000000000341": _TestCard("visa", "credit", declines_charges=True),
    "4000000000000002": _TestCard("visa", "credit", ("card_declined", "generic_decline", _DECLINED)),
    "4000000000009995": _TestCard("visa", "credit", ("card_declined", "insufficient_funds",
                                                     "Your card has insufficient funds.")),
    "4000000000009987": _TestCard("visa", "credit", ("card_declined", "lost_card", _DECLINED)),
    "4000000000009979": _TestCard("visa", "credit", ("card_declined", "stolen_card", _DECLINED)),
    "4000000000000069": _TestCard("visa", "credit", ("expired_card", "expired_card", "Your card has expired.")),
    "4000000000000127": _TestCard("visa", "credit", ("incorrect_cvc", "incorrect_cvc",
                                                     "Your card's security code is incorrect.")),
    "4000000000000119": _TestCard("visa", "credit", ("processing_error", "processing_error",
                                                     "An error occurred while processing your card. Try again in "
                                                     "a little bit.")),
}
BRAND_NAMES = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
               "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay"}


class CardError(Exception):
    """Stripe's card_error: the card could not be saved, and why."""

    def __init__(self, code: str, message: str, param: Optional[str] = None, decline_code: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.param = param
        self.decline_code = decline_code


def check_card(number: str, exp_month: int, exp_year: int, cvc: str, now: float) -> _TestCard:
    """The test card behind number, or the CardError Stripe answers for it."""
    digits = re.sub(r"[\s-]", "", number or "")
    if not re.fullmatch(r"[0-9]{12,19}", digits):
        raise CardError("invalid_number", "Your card number is invalid.", "number")
    if not 1 <= exp_month <= 12:
        raise CardError("invalid_expiry_month", "Your card's expiration month is invalid.", "exp_month")
    today = time.gmtime(now)
    if exp_year < today.tm_year or exp_year > today.tm_year + 50:
        raise CardError("invalid_expiry_year", "Your card's expiration year is invalid.", "exp_year")
    if (exp_year, exp_month) < (today.tm_year, today.tm_mon):
        raise CardError("invalid_expiry_month", "Your card's expiration date is in the past.", "exp_month")
    card = TEST_CARDS.get(digits)
    if not re.fullmatch(r"[0-9]{4}" if card and card.brand == "amex" else r"[0-9]{3,4}", cvc or ""):
        raise CardError("invalid_cvc", "Your card's security code is invalid.", "cvc")
    if not _luhn(digits):
        raise CardError("incorrect_number", "Your card number is incorrect.", "number")
    if card is None:
        raise CardError("card_declined", "%s Your request was in test mode, but used a non test card. For a list "
                        "of valid test cards, visit: %s." % (_DECLINED, TESTING_URL),
                        decline_code="test_mode_live_card")
    if card.refusal:
        code, decline_code, message = card.refusal
        raise CardError(code, message, decline_code=decline_code)
    return card


def _fingerprint(digits: str) -> str:
    return hashlib.sha256(digits.encode()).hexdigest()[:16]


# The saved cards a charge fails on, by fingerprint (a card's number is not kept).
_DECLINING = {_fingerprint(number) for number, card in TEST_CARDS.items() if card.declines_charges}


def declines_when_charged(method: Optional[Dict[str, Any]]) -> bool:
    """Whether a charge on this saved card fails: a renewal charged to it
    leaves the subscription past_due. No card on file charges nothing here:
    the sandbox takes no payment."""
    return bool(method) and method.get("type") == "card" and method["card"]["fingerprint"] in _DECLINING


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


class PaymentMethods:
    """Cards saved to customers."""

    def save_card(self, account_id: Optional[str], customer_id: str, number: str, exp_month: int, exp_year: int,
                  cvc: str, name: Optional[str] = None, postal_code: Optional[str] = None) -> Dict[str, Any]:
        """Attaches the card to the customer and makes it the default for its
        invoices, as the billing portal does; raises CardError as Stripe
        would answer for that test card."""
        with self._lock:
            scope = self._scope(account_id)
            customer = self._customer_or_raise(scope, customer_id)
            if customer.get("deleted"):
                raise ValueError("customer %s is deleted" % customer_id)
            card = check_card(number, exp_month, exp_year, cvc, self.now())
            digits = re.sub(r"[\s-]", "", number)
            method = {
                "id": _random_id("pm_", 24),
                "object": "payment_method",
                "allow_redisplay": "always",
                "billing_details": {
                    "address": {"city": None, "country": None, "line1": None, "line2": None,
                                "postal_code": postal_code or None, "state": None},
                    "email": None, "name": name or None, "phone": None, "tax_id": None},
                "card": {
                    "brand": card.brand,
                    "checks": {"address_line1_check": None,
                               "address_postal_code_check": "pass" if postal_code else None, "cvc_check": "pass"},
                    "country": "US",
                    "display_brand": card.brand,
                    "exp_month": exp_month,
                    "exp_year": exp_year,
                    "fingerprint": _fingerprint(digits),
                    "funding": card.funding,
                    "generated_from": None,
                    "last4": digits[-4:],
                    "networks": {"available": [card.brand], "preferred": None},
                    "regulated_status": "unregulated",
                    "three_d_secure_usage": {"supported": True},
                    "wallet": None,
                },
                "created": int(self.now()),
                "customer": customer_id,
                "livemode": self._livemode(scope),
                "metadata": {},
                "type": "card",
            }
            self._payment_methods.setdefault(scope, {})[method["id"]] = method
            settings = customer.setdefault("invoice_settings", {
                "custom_fields": None, "default_payment_method": None, "footer": None, "rendering_options": None})
            settings["default_payment_method"] = method["id"]
            return copy.deepcopy(method)

    def default_payment_method(self, account_id: Optional[str], customer_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            scope = self._scope(account_id)
            return copy.deepcopy(self._default_payment_method(scope, customer_id))

    def _default_payment_method(self, scope: Optional[str], customer_id: str) -> Optional[Dict[str, Any]]:
        customer = self._customers.get(scope, {}).get(customer_id) or {}
        method_id = (customer.get("invoice_settings") or {}).get("default_payment_method")
        return self._payment_methods.get(scope, {}).get(method_id) if method_id else None
