"""A local stand-in for Stripe that speaks its wire format.

The real stripe-python client talks to it unchanged through
``base_addresses={"api": url, "connect": url}``: form-encoded requests with
Stripe's nested keys, JSON objects with ``object`` and ``id``, Stripe's error
bodies (and the OAuth ones on ``/oauth/*``), ``Request-Id`` headers,
idempotent replays of POSTs, ``Stripe-Should-Retry`` (and ``Retry-After`` when
asked) on injected failures, and injected delays, so the client's own
retries, timeouts and exception classes are exercised.

Tests start it in-process on a free port; the local stack runs it with
``python -m local.stripe_sandbox`` and a person uses its pages in a browser
(the Connect authorize page, a small dashboard at ``/`` that also moves
subscriptions along and its clock ahead, and portal pages). It answers only
requests addressed to localhost or 127.0.0.1 (local/hosts.py).

The package follows Stripe's own layout:

- ``wire``: form decoding, requests and responses, errors, pagination
- ``server``: the HTTP server, the route table, dispatch, injected failures
- ``params``: every API and OAuth request's params checked against the
  stripe-python TypedDict of its route, with Stripe's errors
- ``core``: the state every part shares, its lock and reset
- ``oauth``: accounts and Connect OAuth
- ``customers``, ``payment_methods``, ``products``, ``subscriptions``,
  ``invoices``, ``billing_portal``: one module per resource family, its
  helpers and its API handlers
- ``events``: the event log and webhook delivery, each attempt's answer
  kept, and deliveries held as if the endpoint were down
- ``webhook_endpoints``: /v1/webhook_endpoints, the endpoint webhook_url
  names (``WEBHOOK_ENDPOINT_ID``) and those made through the API, any of
  them disabled as Stripe disables one that keeps failing
- ``preload``: many backdated subscriptions on an account at once, without
  events, as a business had them before it connected a platform
- ``clock``: the sandbox's time, moved ahead as Stripe's test clocks are,
  and what falls due meanwhile (renewals, trial ends, cancellations, failed
  renewals), each at its moment with its events
- the pages a person sees: ``authorize_page`` (Connect), ``portal_pages``
  (the billing portal), ``dashboard`` (the dashboard and its events), and
  ``pages`` for what they share
- ``sandbox``: ``StripeSandbox``, made of the parts above, and ``main()``

Standard library only: importing it imports no stripe, chalice or boto3,
and no stripe-python code takes part in answering a request. The one use of
the pinned library is ``params`` reading its request TypedDicts (generated
from Stripe's OpenAPI spec) when the server starts.
"""
from local.stripe_sandbox.events import DELIVERY_STATES, HELD_DELIVERY_ERROR, WEBHOOK_TIMEOUT_SECONDS, sign_payload
from local.stripe_sandbox.dashboard import SUBSCRIPTION_ACTIONS
from local.stripe_sandbox.oauth import CODE_TTL_SECONDS
from local.stripe_sandbox.preload import DEFAULT_PRELOAD, MAX_PRELOAD
from local.stripe_sandbox.products import DEFAULT_UNIT_AMOUNT
from local.stripe_sandbox.sandbox import StripeSandbox, main
from local.stripe_sandbox.server import ROUTES, Route
from local.stripe_sandbox.subscriptions import DEFAULT_PERIOD_SECONDS, EMBEDDED_ITEMS, SUBSCRIPTION_STATUSES
from local.stripe_sandbox.webhook_endpoints import WEBHOOK_ENDPOINT_ID, WEBHOOK_ENDPOINT_STATUSES
from local.stripe_sandbox.wire import (API_VERSION, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Request, Response,
                                       SandboxError, html_response, json_response, mask_key, oauth_error,
                                       parse_form, parse_nested, redirect, stripe_error)

__all__ = [
    "API_VERSION", "CODE_TTL_SECONDS", "DEFAULT_PAGE_LIMIT", "DEFAULT_PERIOD_SECONDS", "DEFAULT_PRELOAD",
    "DEFAULT_UNIT_AMOUNT", "DELIVERY_STATES", "EMBEDDED_ITEMS", "HELD_DELIVERY_ERROR", "MAX_PAGE_LIMIT",
    "MAX_PRELOAD", "ROUTES", "Request", "Response", "Route", "SUBSCRIPTION_ACTIONS", "SUBSCRIPTION_STATUSES",
    "SandboxError", "StripeSandbox", "WEBHOOK_ENDPOINT_ID", "WEBHOOK_ENDPOINT_STATUSES", "WEBHOOK_TIMEOUT_SECONDS",
    "html_response", "json_response", "main", "mask_key", "oauth_error", "parse_form", "parse_nested", "redirect",
    "sign_payload", "stripe_error",
]
