"""What schemathesis loads for `make fuzz` (SCHEMATHESIS_HOOKS=fuzz.hooks):
the tokens each operation is called with, the contract's own checks, and the
hooks that keep the local site connected and sign webhook deliveries."""
import hashlib
import hmac
import json
import os
import re
import time

import requests.auth
import schemathesis

from chalicelib.access import is_stripe_id
from fuzz.run import CARD_PATH, SETTINGS_PATH, ready_site
from local.stack_runner import CALLBACK_PATH
from local.run import LOCAL_ACCOUNT

WEBHOOK_PATH = "/webhooks/stripe"
# The contract's codes for the statuses that have one code only.
STATUS_CODES = {401: "unauthorized", 403: "forbidden", 405: "method_not_allowed",
                413: "payload_too_large", 415: "unsupported_media_type", 500: "internal_error",
                502: "stripe_error"}
SNAKE_CASE = re.compile(r"^[a-z]+(_[a-z]+)*$")
HANDLED_TYPES = ("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
                 "customer.subscription.paused", "customer.subscription.resumed",
                 "account.application.deauthorized", "account.updated")


def setting(name: str) -> str:
    return os.environ["FUZZ_" + name]


# Member routes take the member's token (whose Stripe customer the sandbox
# has, so the portal opens); admin routes the admin's. The webhook and the
# GET callback take none.
@schemathesis.auth(refresh_interval=None, retry_on=[]).apply_to(tag="member")
class MemberToken:
    def get(self, case, context):
        return setting("MEMBER_TOKEN")

    def set(self, case, data, context):
        case.headers = dict(case.headers or {}, Authorization="Bearer " + data)


@schemathesis.auth(refresh_interval=None, retry_on=[]).apply_to(tag="admin")
class AdminToken:
    def get(self, case, context):
        return setting("ADMIN_TOKEN")

    def set(self, case, data, context):
        case.headers = dict(case.headers or {}, Authorization="Bearer " + data)


class StripeSigner(requests.auth.AuthBase):
    """Signs the body as it goes on the wire, as Stripe signs a delivery."""

    def __call__(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        timestamp = int(time.time())
        signature = hmac.new(setting("WEBHOOK_SECRET").encode(), b"%d.%s" % (timestamp, body), hashlib.sha256)
        request.headers["Stripe-Signature"] = "t=%d,v1=%s" % (timestamp, signature.hexdigest())
        return request


@schemathesis.hook
def before_call(context, case, kwargs):
    # Valid data gets Stripe's signature, so that the handling behind the
    # signature is fuzzed too; invalid data keeps what was generated (most of
    # it answers 400 invalid_signature, as the contract says).
    if case.operation.path == WEBHOOK_PATH and case.method.upper() == "POST" and is_positive(case):
        kwargs["auth"] = StripeSigner()
        if isinstance(case.body, dict):
            case.body = deliverable(case.body)


def deliverable(event: dict) -> dict:
    """The generated event about the local site's account, mostly of a type
    that is handled, with ids shaped like Stripe's: so that it reaches the
    handlers (and the Stripe reads and DynamoDB writes behind them) instead
    of being ignored. The same body keeps the same ids (a duplicate)."""
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()[:24]
    pick = int(digest, 16)
    event = dict(event, account=LOCAL_ACCOUNT, id="evt_" + digest)
    if event.get("type") not in HANDLED_TYPES and pick % 4:
        event["type"] = HANDLED_TYPES[pick % len(HANDLED_TYPES)]
    data = event.get("data")
    if isinstance(data, dict):
        carried = data.get("object")
        carried = dict(carried) if isinstance(carried, dict) else {}
        if not is_stripe_id(carried.get("id")):
            carried["id"] = ("acct_" if str(event.get("type")).startswith("account.") else "sub_") + digest
        event["data"] = dict(data, object=carried)
    return event


def is_positive(case) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


@schemathesis.hook
def after_call(context, case, response):
    if response.status_code == 200 and (case.method.upper(), case.operation.path) in (
            ("DELETE", CARD_PATH), ("PUT", SETTINGS_PATH), ("POST", WEBHOOK_PATH)):
        # A disconnect, a revocation or a portal turned off would leave every
        # later operation only its disconnected branches.
        ready_site(setting("API_URL"), setting("SANDBOX_URL"), setting("ADMIN_TOKEN"))


@schemathesis.check
def error_body_is_the_contracts(ctx, response, case):
    """Every 4xx and 5xx is JSON `{"error": {"code", "message"}}`, the
    framework's own answers included."""
    if response.status_code < 400:
        return None
    content_type = ";".join(response.headers.get("content-type", []))
    assert content_type.split(";")[0].strip() == "application/json", \
        "error %d is %r, not application/json" % (response.status_code, content_type)
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError("error %d is not JSON: %r" % (response.status_code, response.content[:200]))
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(body, dict) and list(body) == ["error"] and isinstance(error, dict), \
        "error %d is not {\"error\": {...}}: %r" % (response.status_code, body)
    assert sorted(error) == ["code", "message"], "error %d has fields %r" % (response.status_code, sorted(error))
    code, message = error["code"], error["message"]
    assert isinstance(code, str) and SNAKE_CASE.match(code), "error code %r is not snake_case" % (code,)
    assert isinstance(message, str) and message.strip(), "error %d has no message" % response.status_code
    expected = STATUS_CODES.get(response.status_code)
    assert expected is None or code == expected, \
        "error %d is %r, the contract says %r" % (response.status_code, code, expected)
    assert "Traceback" not in message, "error %d carries a stack trace" % response.status_code
    return None


@schemathesis.check
def no_request_header_echoed(ctx, response, case):
    """No answer quotes the caller's token or signature back."""
    sent = response.request.headers
    text = response.content.decode("utf-8", errors="replace")
    for name in ("Authorization", "Stripe-Signature"):
        value = sent.get(name)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        # Short values (a generated "0") turn up anywhere by chance.
        if value and len(value.strip()) >= 24:
            for part in {value.strip(), value.strip().split(" ")[-1]}:
                assert part not in text and part not in str(response.headers), \
                    "the answer quotes the request's %s header" % name
    return None


@schemathesis.check
def cors_for_the_ui_alone(ctx, response, case):
    """The UI's routes answer CORS for APP_BASE_URL's origin; Stripe's
    webhook and the GET callback bounce answer none."""
    path, method = case.operation.path, case.method.upper()
    cors = {name: values for name, values in response.headers.items() if name.startswith("access-control-")}
    if path == WEBHOOK_PATH or (path == CALLBACK_PATH and method in ("GET", "HEAD")):
        assert not cors, "%s %s answers CORS headers %r" % (method, path, sorted(cors))
    else:
        assert cors.get("access-control-allow-origin") == [setting("APP_BASE_URL")], \
            "%s %s answers Access-Control-Allow-Origin %r" % (method, path, cors.get("access-control-allow-origin"))
    return None
