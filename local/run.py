"""The local stack behind `make run`: an embedded AWS (moto server), a Stripe
sandbox when no Stripe key is given, and the API on http://127.0.0.1:8000.
With the sandbox, the whole stack runs on the sandbox's clock, which can be
moved ahead (local/clock.py).

Every variable of the contract's configuration table overrides the local
default given here.
"""
import logging
import os
import sys
import time
from urllib.parse import urlsplit

LOCAL_JWT_SECRET = "local-development-secret-not-for-production-use"
SANDBOX_SECRET_KEY = "sk_test_local_sandbox"
SANDBOX_CLIENT_ID = "ca_local_sandbox"
SANDBOX_WEBHOOK_SECRET = "whsec_local_sandbox"
LOCAL_SITE = "site_local"
LOCAL_ACCOUNT = "acct_localfitness01"
LOCAL_MEMBER = ("user_member", "member@localfitness.test")


def local_environment(environ: dict) -> dict:
    """The environment the local stack runs with: the caller's, with local
    defaults for what it leaves out."""
    env = dict(environ)
    port = int(env.get("PORT") or 8000)
    aws_port = int(env.get("LOCAL_AWS_PORT") or 5000)
    sandbox_port = int(env.get("STRIPE_SANDBOX_PORT") or 12111)
    # The UI and APP_BASE_URL follow each other, so that Stripe's and the
    # portal's redirects land on the UI whichever of the two is given.
    ui_port = int(env.get("UI_PORT") or local_port(env.get("APP_BASE_URL")) or 3000)
    api_url = "http://127.0.0.1:%d" % port
    defaults = {
        "PORT": str(port),
        "LOCAL_AWS_PORT": str(aws_port),
        "UI_PORT": str(ui_port),
        "APP_BASE_URL": "http://localhost:%d" % ui_port,
        "OAUTH_REDIRECT_URI": api_url + "/connectors/stripe/oauth/callback",
        "AUTH_JWT_SECRET": LOCAL_JWT_SECRET,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if not env.get("STRIPE_SECRET_KEY"):
        from local.stripe_sandbox import WEBHOOK_ENDPOINT_ID

        sandbox_url = "http://127.0.0.1:%d" % sandbox_port
        defaults.update({
            "STRIPE_SANDBOX_PORT": str(sandbox_port),
            "STRIPE_SECRET_KEY": SANDBOX_SECRET_KEY,
            "STRIPE_CLIENT_ID": SANDBOX_CLIENT_ID,
            "STRIPE_WEBHOOK_SECRET": SANDBOX_WEBHOOK_SECRET,
            # The endpoint the sandbox sends webhooks to, watched like Stripe's.
            "STRIPE_WEBHOOK_ENDPOINT_ID": WEBHOOK_ENDPOINT_ID,
            "STRIPE_API_BASE": sandbox_url,
            "STRIPE_CONNECT_BASE": sandbox_url,
        })
        # Given no key, the sandbox is the Stripe: its settings win over
        # leftovers in the environment that point elsewhere.
        for name in ("STRIPE_CLIENT_ID", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "STRIPE_CONNECT_BASE"):
            env.pop(name, None)
        env["LOCAL_STRIPE_SANDBOX"] = "1"
    if not env.get("AWS_ENDPOINT_URL"):
        defaults["AWS_ENDPOINT_URL"] = "http://127.0.0.1:%d" % aws_port
        env["LOCAL_EMBEDDED_AWS"] = "1"
    for name, value in defaults.items():
        if not env.get(name):
            env[name] = value
    return env


def local_port(origin) -> int:
    """The port of an origin on this machine (http://localhost:3520), else 0."""
    try:
        parts = urlsplit(origin or "")
        if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1") and parts.port:
            return parts.port
    except ValueError:
        pass
    return 0


def start_embedded_aws(port: int):
    from local.embedded_aws import EmbeddedAWS

    return EmbeddedAWS("127.0.0.1", port).start()


def start_sandbox(env: dict):
    from local.stripe_sandbox import StripeSandbox

    sandbox = StripeSandbox(
        secret_key=env["STRIPE_SECRET_KEY"], client_id=env["STRIPE_CLIENT_ID"],
        port=int(env["STRIPE_SANDBOX_PORT"]),
        webhook_url="http://127.0.0.1:%s/webhooks/stripe" % env["PORT"],
        webhook_secret=env["STRIPE_WEBHOOK_SECRET"])
    from app import CALLBACK_PAGE, CALLBACK_PATH

    redirect_uri = env["OAUTH_REDIRECT_URI"]
    if urlsplit(redirect_uri).path == CALLBACK_PATH:
        # The API's GET callback passes the person on to the UI's page: the
        # authorize page names where they land, not the API.
        sandbox.redirect_landings[redirect_uri] = env["APP_BASE_URL"].rstrip("/") + CALLBACK_PAGE
    sandbox.start()
    sandbox.create_account(id=LOCAL_ACCOUNT, display_name="Local Fitness Studio",
                           email="owner@localfitness.test")
    # The local member's own Stripe customer, so the billing portal opens
    # for the member token once the account is connected.
    user_id, email = LOCAL_MEMBER
    sandbox.create_customer(LOCAL_ACCOUNT, email=email, name="Local Member",
                            metadata={"customerhub_user_id": user_id})
    return sandbox


def start_announcements(settings, replay: bool):
    """AccessGranted / AccessRevoked from the entitlements stream, as the
    stream's Lambda trigger would make them in AWS."""
    import boto3

    from app import announce_access
    from local.streams import StreamPump

    def client(name: str):
        return boto3.client(name, region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)

    if settings.access_event_bus != "default":
        events = client("events")
        if not [b for b in events.list_event_buses()["EventBuses"] if b["Name"] == settings.access_event_bus]:
            events.create_event_bus(Name=settings.access_event_bus)
    pump = StreamPump(client("dynamodb"), client("dynamodbstreams"), settings.entitlements_table,
                      announce_access)
    if not replay:
        # An AWS of your own may hold a stream announced long ago.
        pump.skip_to_end()
    return pump.start(interval=0.5)


def start_work_queue(settings):
    """The import and catch-up work: the queue (with its dead-letter queue)
    and the consumer Lambda's event source mapping would be in AWS."""
    import boto3

    from app import sync_worker
    from local.queues import QueuePump, create_work_queues

    sqs = boto3.client("sqs", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
    create_work_queues(sqs, visibility_timeout=60)
    return QueuePump(sqs, sync_worker).start(interval=0.5)


# As many at once as the template lets Lambda run stripe_events
# (infra/template.yaml, ScalingConfig).
EVENT_WORKERS = 5


def start_event_queue(settings, sandbox=None):
    """Stripe's events the webhook acknowledged: the queue (with its
    dead-letter queue) and stripe_events as Lambda's trigger would run it.
    A failed event comes again after 2 s here (after its visibility timeout
    in AWS); an idle queue is asked every 0.2 s, so that a webhook changes
    access well within a second. On the sandbox's clock, each message's
    SentTimestamp is moved onto that clock (local/clock.py)."""
    import boto3

    from app import stripe_events
    from chalicelib.queues import EVENTS_QUEUE
    from local.queues import QueuePump, create_event_queues

    sqs = boto3.client("sqs", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
    create_event_queues(sqs, visibility_timeout=60)
    handler = stripe_events
    if sandbox is not None:
        from local import clock as local_clock

        handler = local_clock.sent_times_on_the_clock(stripe_events, lambda: sandbox.clock_offset)
    if settings.stripe_event_source:
        from local.queues import route_event_source

        events = boto3.client("events", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
        route_event_source(events, sqs, settings.stripe_event_source)
        print("  Stripe's events by EventBridge: put on the default bus with source %s"
              % settings.stripe_event_source, flush=True)
    return QueuePump(sqs, handler, queue_name=EVENTS_QUEUE).start(interval=0.2, workers=EVENT_WORKERS)


TOKEN_HOURS = 12


def development_token(env: dict, sub: str, role: str, email: str, site_id: str = LOCAL_SITE,
                      hours: int = TOKEN_HOURS) -> str:
    """A token as CustomerHub would sign one, with the stack's secret and issuer."""
    import jwt

    now = int(time.time())
    # CustomerHub vouches for the address, as it does once a user has
    # confirmed theirs: the portal may find the member's customer by it.
    claims = {"sub": sub, "site": site_id, "role": role, "email": email, "email_verified": True,
              "iss": env.get("AUTH_JWT_ISSUER") or "customerhub", "aud": "stripe-connector",
              "iat": now, "exp": now + hours * 3600}
    return jwt.encode(claims, env["AUTH_JWT_SECRET"], algorithm="HS256")


def start_ui(env: dict, settings, api_url: str, sandbox):
    """The reference CustomerHub UI, whose local sign-in mints tokens as
    CustomerHub would sign them."""
    from local.ui_server import UIServer

    signing = {"AUTH_JWT_SECRET": settings.auth_jwt_secret, "AUTH_JWT_ISSUER": settings.auth_jwt_issuer}

    def mint(user_id: str, role: str, email: str) -> str:
        return development_token(signing, user_id, role, email)

    return UIServer(api_url, settings.app_base_url, mint, port=int(env["UI_PORT"]), extra_config={
        "site": LOCAL_SITE, "tokenHours": TOKEN_HOURS, "stripeSandboxUrl": sandbox.url if sandbox else None,
    }).start()


def local_tokens(env: dict, site_id: str = LOCAL_SITE, hours: int = TOKEN_HOURS) -> dict:
    return {"admin": development_token(env, "user_admin", "admin", "admin@localfitness.test", site_id, hours),
            "member": development_token(env, LOCAL_MEMBER[0], "member", LOCAL_MEMBER[1], site_id, hours)}


def main() -> int:
    from chalicelib import observability

    # Plain lines for a person, each with the keys of the request it is
    # about (LOG_FORMAT=json shows the connector's lines as Lambda writes them).
    observability.configure_logging(observability.PLAIN)
    # The embedded AWS logs every request it serves; only its problems matter here.
    for noisy in ("werkzeug", "botocore.credentials"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    env = local_environment(os.environ)
    os.environ.clear()
    os.environ.update(env)

    from chalicelib.errors import ConfigurationError
    from chalicelib.settings import get_settings

    from local.schedules import LocalSchedules, wanted

    try:
        settings = get_settings()
        scheduling = wanted(env.get("LOCAL_SCHEDULES", ""))
    except (ConfigurationError, ValueError) as exc:
        print("The connector will not start: %s" % exc, file=sys.stderr)
        return 2

    servers = []
    if env.get("LOCAL_EMBEDDED_AWS"):
        servers.append(start_embedded_aws(int(env["LOCAL_AWS_PORT"])))
    sandbox = start_sandbox(env) if env.get("LOCAL_STRIPE_SANDBOX") else None
    if sandbox:
        from chalicelib import clock
        from local import clock as local_clock

        # One clock for the stack: the sandbox's, which its dashboard and
        # `make advance` move; the API and its consumers read its offset.
        clock.use(local_clock.following(sandbox))

    from chalicelib import models

    models.bind(settings)
    models.create_tables()
    pump = start_announcements(settings, replay=bool(env.get("LOCAL_EMBEDDED_AWS")))
    work = start_work_queue(settings)
    events = start_event_queue(settings, sandbox)

    from app import app
    from local.api_server import make_server

    api = make_server(app, "127.0.0.1", int(env["PORT"]))
    tokens = local_tokens(env)
    api_url = "http://127.0.0.1:%s" % env["PORT"]
    ui = start_ui(env, settings, api_url, sandbox)
    servers.append(ui)
    print("\nCustomerHub Stripe connector, local stack", flush=True)
    print("  Open the UI:    %s  (sign in as the site's admin or a member)" % settings.app_base_url)
    if local_port(settings.app_base_url) != ui.port:
        print("  (the reference UI is on %s; APP_BASE_URL %s is where redirects go and the only origin the API "
              "answers CORS for)" % (ui.url, settings.app_base_url))
    print("  API:            %s" % api_url)
    print("  AWS (moto):     %s%s" % (settings.aws_endpoint_url, "" if env.get("LOCAL_EMBEDDED_AWS") else " (yours)"))
    print("  Stripe:         %s" % ("sandbox at " + sandbox.url if sandbox else settings.stripe_api_base))
    if sandbox:
        print("  Clock:          the sandbox's, moved ahead on its page or with `make advance DAYS=…`")
    import app as functions

    schedules = LocalSchedules(functions, settings.aws_region).start() if scheduling else None
    if schedules:
        print("  Schedules:      %s, on the stack's clock (LOCAL_SCHEDULES=off: only by make sweep / "
              "make catch-up)" % schedules.describe())
    else:
        print("  Schedules:      off (LOCAL_SCHEDULES=off): make sweep and make catch-up run them")
    print("  Site:           %s" % LOCAL_SITE)
    print("\n  export ADMIN_TOKEN=%s" % tokens["admin"])
    print("  export MEMBER_TOKEN=%s" % tokens["member"])
    print("\n  curl -s -X POST %s/connectors/stripe/connect -H \"Authorization: Bearer $ADMIN_TOKEN\"" % api_url)
    print("  curl -s %s/connectors/stripe -H \"Authorization: Bearer $ADMIN_TOKEN\"\n" % api_url, flush=True)
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if schedules:
            schedules.stop()
        pump.stop()
        work.stop()
        events.stop()
        if sandbox:
            sandbox.stop()
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
