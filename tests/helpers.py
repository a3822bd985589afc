"""What the tests share: the test environment, tokens, and signed webhooks."""
import json
import time
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import jwt
import stripe

JWT_SECRET = "test-secret-for-customerhub-tokens-0123456789-and-more-bytes-so-hs512-is-fine"
WEBHOOK_SECRET = "whsec_test_connector_endpoint"
APP_BASE_URL = "https://app.customerhub.test"
REDIRECT_URI = "https://api.customerhub.test/connectors/stripe/oauth/callback"
SECRET_KEY = "sk_test_platform_key_for_tests"
CLIENT_ID = "ca_test_platform"


def environment(sandbox_url: str) -> dict:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_CLIENT_ID": CLIENT_ID,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_CONNECT_BASE": sandbox_url,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "APP_BASE_URL": APP_BASE_URL,
        "OAUTH_REDIRECT_URI": REDIRECT_URI,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def token(site: str = "site_a", role: str = "admin", sub: str = "user_1",
          email: Optional[str] = None, secret: str = JWT_SECRET, algorithm: str = "HS256",
          **claims) -> str:
    now = int(time.time())
    body = {"sub": sub, "site": site, "role": role, "iss": "customerhub",
            "aud": "stripe-connector", "iat": now, "exp": now + 600}
    if email:
        body["email"] = email
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret, algorithm=algorithm)


def bearer(**kwargs) -> dict:
    return {"Authorization": "Bearer " + token(**kwargs)}


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def signed(event: dict, secret: str = WEBHOOK_SECRET, timestamp: Optional[int] = None):
    """A webhook body and the headers Stripe would send with it."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}


def stripe_event(event_type: str, account: Optional[str], data_object: dict,
                 created: Optional[int] = None, livemode: bool = False,
                 event_id: Optional[str] = None) -> dict:
    return {
        "id": event_id or "evt_%d" % time.time_ns(),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "account": account,
        "created": created if created is not None else int(time.time()),
        "livemode": livemode,
        "type": event_type,
        "data": {"object": data_object},
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
    }
