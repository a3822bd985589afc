"""A local stand-in for Stripe that speaks its wire format (see sandbox.py).

Standard library only: it must never import stripe, chalice or boto3.
"""
from local.stripe_sandbox.sandbox import (API_VERSION, CODE_TTL_SECONDS, DEFAULT_PAGE_LIMIT, DEFAULT_PERIOD_SECONDS,
                                          DEFAULT_UNIT_AMOUNT, EMBEDDED_ITEMS, MAX_PAGE_LIMIT, ROUTES,
                                          SUBSCRIPTION_ACTIONS, SUBSCRIPTION_STATUSES, WEBHOOK_TIMEOUT_SECONDS,
                                          Request, Response, Route, SandboxError, StripeSandbox, html_response,
                                          json_response, main, mask_key, oauth_error, parse_form, parse_nested,
                                          redirect, sign_payload, stripe_error)

__all__ = [
    "API_VERSION", "CODE_TTL_SECONDS", "DEFAULT_PAGE_LIMIT", "DEFAULT_PERIOD_SECONDS", "DEFAULT_UNIT_AMOUNT",
    "EMBEDDED_ITEMS", "MAX_PAGE_LIMIT", "ROUTES", "Request", "Response", "Route", "SUBSCRIPTION_ACTIONS",
    "SUBSCRIPTION_STATUSES", "SandboxError", "StripeSandbox", "WEBHOOK_TIMEOUT_SECONDS", "html_response",
    "json_response", "main", "mask_key", "oauth_error", "parse_form", "parse_nested", "redirect", "sign_payload",
    "stripe_error",
]
