"""StripeSandbox, made of one part per resource family, and the command line
that serves it (python -m local.stripe_sandbox)."""
import argparse
import os
from typing import List, Optional

from local.stripe_sandbox.authorize_page import AuthorizePage
from local.stripe_sandbox.billing_portal import BillingPortal
from local.stripe_sandbox.clock import SandboxClock
from local.stripe_sandbox.core import SandboxCore
from local.stripe_sandbox.customers import Customers
from local.stripe_sandbox.dashboard import Dashboard
from local.stripe_sandbox.events import Events
from local.stripe_sandbox.invoices import Invoices
from local.stripe_sandbox.oauth import OAuthAndAccounts
from local.stripe_sandbox.payment_methods import PaymentMethods
from local.stripe_sandbox.portal_pages import PortalPages
from local.stripe_sandbox.preload import Preload
from local.stripe_sandbox.products import Products
from local.stripe_sandbox.server import Server
from local.stripe_sandbox.subscriptions import Subscriptions
from local.stripe_sandbox.webhook_endpoints import WEBHOOK_ENDPOINT_ID, WebhookEndpoints


class StripeSandbox(OAuthAndAccounts, Customers, PaymentMethods, Products, Subscriptions, Invoices, BillingPortal,
                    Events, WebhookEndpoints, Preload, SandboxClock, AuthorizePage, PortalPages, Dashboard, Server,
                    SandboxCore):
    """A local Stripe: its state lives in SandboxCore, each resource family's
    helpers and API handlers in their own part, its time in SandboxClock, the
    pages a person meets in theirs, the HTTP side in Server."""


def main(argv: Optional[List[str]] = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m local.stripe_sandbox",
                                     description="A local stand-in for Stripe's API and Connect OAuth.")
    parser.add_argument("--host", default=env("STRIPE_SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("STRIPE_SANDBOX_PORT", "12111")))
    parser.add_argument("--secret-key", default=env("STRIPE_SANDBOX_SECRET_KEY", "sk_test_sandbox"))
    parser.add_argument("--client-id", default=env("STRIPE_SANDBOX_CLIENT_ID", "ca_sandbox"))
    parser.add_argument("--webhook-url", default=env("STRIPE_SANDBOX_WEBHOOK_URL"))
    parser.add_argument("--webhook-secret", default=env("STRIPE_SANDBOX_WEBHOOK_SECRET"))
    parser.add_argument("--platform-name", default=env("STRIPE_SANDBOX_PLATFORM_NAME", "CustomerHub"))
    parser.add_argument("--seed-account", action="append", default=[], metavar="DISPLAY_NAME",
                        help="create a test account with this display name (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    if bool(args.webhook_url) != bool(args.webhook_secret):
        parser.error("--webhook-url and --webhook-secret go together")

    sandbox = StripeSandbox(secret_key=args.secret_key, client_id=args.client_id, host=args.host,
                            port=args.port, webhook_url=args.webhook_url, webhook_secret=args.webhook_secret,
                            platform_name=args.platform_name, log_requests=not args.quiet)
    for name in args.seed_account:
        sandbox.create_account(display_name=name, business_name=name)
    sandbox.start()
    print("Stripe sandbox listening on %s (client_id %s%s)" % (
        sandbox.url, args.client_id, ", webhooks to %s, endpoint %s" % (args.webhook_url, WEBHOOK_ENDPOINT_ID)
        if args.webhook_url else ""), flush=True)
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
