"""Routes, the webhook and the wiring: parse the request, make one call, map
domain errors to the contract's HTTP answers."""
import functools
import json
import logging
from urllib.parse import unquote, urlencode

from chalice import Chalice, Rate, Response
from chalice.app import Request

from chalicelib import observability, services
from chalicelib.auth import ADMIN_ROLES, ROLES, authenticate, require_role
from chalicelib.connections import parse_connect_request
from chalicelib.errors import (AccessDenied, AlreadyLinked, ConfigurationError, ConnectionChanged, ConnectorError,
                               Forbidden, InvalidPayload, InvalidRequest, InvalidSignature, InvalidState,
                               NoBillingAccount, NotConnected, NotFound, NotLinked, PayloadTooLarge, PortalDisabled,
                               RateLimited, StripeFailure, Unauthorized)
from chalicelib.catch_up import CATCH_UP_MESSAGE
from chalicelib.sweep import SWEEP_MESSAGE
from chalicelib.imports import IMPORT_MESSAGE
from chalicelib.portal import parse_portal_settings, parse_session_request
from chalicelib.queues import EVENTS_QUEUE, SYNC_QUEUE, QueueFailure, receive_count, sent_at
from chalicelib.history import decode_cursor as decode_history_cursor
from chalicelib.unmatched import decode_cursor, parse_limit
from chalicelib.settings import get_settings, log_format

# Chalice's own handler on app.log would write a second, unstructured copy
# of every line the JSON logging writes (chalicelib/observability.py).
app = Chalice(app_name=observability.SERVICE, configure_logs=False)
app.debug = False
observability.configure_logging(log_format())
logger = logging.getLogger("chalicelib.app")

MAX_JSON_BODY_BYTES = 64 * 1024
CALLBACK_PATH = "/connectors/stripe/oauth/callback"
# The UI's page that completes a connection with the admin's token.
CALLBACK_PAGE = "/settings/connectors/stripe/callback"
WEBHOOK_PATH = "/webhooks/stripe"
# What a read route answers. API Gateway has no HEAD of its own for a GET
# method: without one a monitor's HEAD would be its 404. The app answers it
# as the GET (API Gateway sends no body on a HEAD).
READ = ["GET", "HEAD"]
# The Content-Type of a route that reads no body: whatever the request names.
# Chalice refuses all but JSON otherwise, which turned a GET sent with a
# stray `Content-Type: text/plain` into a 415 about a body it did not have.
ANY_BODY = ["*/*"]
# How often expire_access runs: a member loses access at most this long after
# access_until in CustomerHub's own view (GET /access never shows it past then).
SWEEP_SCHEDULE = Rate(15, unit=Rate.MINUTES)
CATCH_UP_SCHEDULE = Rate(1, unit=Rate.HOURS)
# Stripe disables an endpoint that keeps failing: seen within 5 minutes, alarmed within 15.
ENDPOINT_WATCH_SCHEDULE = Rate(5, unit=Rate.MINUTES)

ERRORS = (
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (InvalidSignature, 400, "invalid_signature"),
    (InvalidPayload, 400, "invalid_payload"),
    (InvalidRequest, 400, None),
    (InvalidState, 400, "invalid_state"),
    (AccessDenied, 400, "access_denied"),
    (NoBillingAccount, 404, "no_billing_account"),
    (NotFound, 404, "not_found"),
    (AlreadyLinked, 409, "already_linked"),
    (NotLinked, 409, "not_linked"),
    (NotConnected, 409, "not_connected"),
    (PortalDisabled, 409, "portal_disabled"),
    (ConnectionChanged, 409, "conflict"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (StripeFailure, 502, "stripe_error"),
)
# Chalice's own error answers, in the contract's words.
FRAMEWORK_ERRORS = {
    400: "invalid_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large", 415: "unsupported_media_type", 500: "internal_error",
}
FRAMEWORK_MESSAGES = {
    405: "This route does not answer that method",
    415: "The body must be application/json",
    500: "An internal error occurred",
}


@app.middleware("all")
def observed(event, get_response):
    """Every invocation, of every function: its log lines start afresh
    (Lambda's request id, API Gateway's and the route for a request), and
    its metrics are written when it ends, whatever happened."""
    if isinstance(event, Request):
        gateway = event.context or {}
        observability.start_invocation(event.lambda_context, correlation_id=gateway.get("requestId"),
                                       route="%s %s" % (event.method, gateway.get("resourcePath", "")))
    else:
        observability.start_invocation(getattr(event, "context", None))
    try:
        return get_response(event)
    finally:
        services.get_metrics().flush()


def error_response(status: int, code: str, message: str, headers=None) -> Response:
    return Response(body={"error": {"code": code, "message": message}},
                    status_code=status, headers=headers or {})


def to_response(exc: ConnectorError) -> Response:
    if isinstance(exc, RateLimited):
        return error_response(429, "rate_limited", str(exc), headers={"Retry-After": str(exc.retry_after)})
    for kind, status, code in ERRORS:
        if isinstance(exc, kind):
            if status == 502:
                # Stripe's own words may name accounts or ids; the log keeps them.
                logger.warning("Stripe failure: %s", exc)
                return error_response(status, code, "Stripe could not complete the request")
            return error_response(status, code or exc.code, str(exc))
    if isinstance(exc, ConfigurationError):
        logger.error("Configuration error: %s", exc)
    else:
        logger.exception("Unmapped connector error")
    return error_response(500, "internal_error", "An internal error occurred")


def answers_errors(view):
    """Turn what a view raises into the contract's error body."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except ConnectorError as exc:
            return to_response(exc)
        except Exception:
            logger.exception("Unhandled error in %s", view.__name__)
            return error_response(500, "internal_error", "An internal error occurred")
    return wrapper


def caller(roles=ROLES):
    settings = get_settings()
    found = authenticate(app.current_request.headers.get("authorization"),
                         settings.auth_jwt_secret, settings.auth_jwt_issuer)
    # Who is asking, on every line from here on (a refused role included).
    observability.bind(site_id=found.site_id, user_id=found.user_id)
    return require_role(found, roles)


def member_caller():
    """The caller of a member route, after their unmatched subscriptions with
    their verified email were claimed. A claim that fails is tried again on
    their next request; it does not fail this one."""
    member = caller()
    try:
        services.get_unmatched_service().claim_for(member)
    except Exception:
        logger.exception("Claiming subscriptions for a member of site %s failed", member.site_id)
    return member


def json_body(required: bool = False):
    raw = app.current_request.raw_body or b""
    if len(raw) > MAX_JSON_BODY_BYTES:
        raise PayloadTooLarge("The body is over %d bytes" % MAX_JSON_BODY_BYTES)
    if not raw.strip():
        if required:
            raise InvalidRequest("A JSON body is required")
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # RecursionError: arrays nested tens of thousands deep are valid JSON
        # that Python's parser cannot hold. UnicodeDecodeError is a ValueError.
        raise InvalidRequest("The body is not valid JSON") from exc


@app.middleware("http")
def contract_answers(event, get_response):
    """Give every answer, the framework's own included, the contract's error
    body, and CORS headers for the UI's origin on the UI's routes."""
    try:
        response = get_response(event)
    except Exception:
        logger.exception("Unhandled error")
        response = error_response(500, "internal_error", "An internal error occurred")
    body = response.body
    if response.status_code >= 400 and not (isinstance(body, dict) and "error" in body):
        code = FRAMEWORK_ERRORS.get(response.status_code, "internal_error")
        message = FRAMEWORK_MESSAGES.get(response.status_code, "The request could not be handled")
        if response.status_code == 500:
            logger.error("Framework answered 500: %s", body)
        # Drop whatever the framework said: it may quote the request.
        response = Response(body={"error": {"code": code, "message": message}},
                            status_code=response.status_code,
                            headers={k: v for k, v in response.headers.items() if k.lower() == "allow"})
    response.headers.setdefault("Cache-Control", "no-store")
    if answers_cors(getattr(event, "path", None), getattr(event, "method", None), requested_method(event)):
        response.headers.update(cors_headers())
    return response


def requested_method(request):
    """The method a CORS preflight asks for."""
    headers = getattr(request, "headers", None) or {}
    return headers.get("access-control-request-method")


def answers_cors(path, method, requested=None) -> bool:
    """Stripe, and the admin's browser bounced back from Stripe, are not the
    UI: the webhook and the GET callback answer no CORS headers, not even to
    a preflight. On the callback path only the POST, and the preflight that
    asks for it, are the UI's."""
    if path == WEBHOOK_PATH:
        return False
    if path == CALLBACK_PATH:
        if method == "OPTIONS":
            return requested == "POST"
        return method not in ("GET", "HEAD")
    return True


def cors_headers() -> dict:
    try:
        origin = get_settings().app_base_url
    except ConfigurationError:
        return {}
    # Retry-After is not among the headers a browser lets the page read
    # unless the answer names it.
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "Retry-After",
            "Vary": "Origin"}


def preflight(path: str, methods: str):
    """Answer the browser's CORS preflight for a UI route."""
    def view(**_):
        if not answers_cors(path, "OPTIONS", requested_method(app.current_request)):
            return error_response(403, "forbidden", "Cross-origin requests may only POST to this path")
        headers = dict(cors_headers())
        headers.update({"Access-Control-Allow-Methods": methods + ",OPTIONS",
                        "Access-Control-Allow-Headers": "Authorization,Content-Type",
                        "Access-Control-Max-Age": "600"})
        return Response(body="", status_code=204, headers=headers)
    view.__name__ = "preflight_" + path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
    app.route(path, methods=["OPTIONS"])(view)


preflight("/connectors/stripe", "GET,DELETE")
preflight("/connectors/stripe/connect", "POST")
preflight("/connectors/stripe/settings", "PUT")
preflight("/connectors/stripe/sync", "POST")
preflight("/connectors/stripe/unmatched", "GET")
preflight("/connectors/stripe/unmatched/{subscription_id}/link", "POST")
preflight("/connectors/stripe/links/{subscription_id}", "DELETE")
preflight(CALLBACK_PATH, "POST")
preflight("/billing/portal", "GET")
preflight("/billing/portal/sessions", "POST")
preflight("/access", "GET")
preflight("/access/{user_id}", "GET")
preflight("/access/history", "GET")
preflight("/access/{user_id}/history", "GET")
preflight("/members", "GET")


@app.route("/connectors/stripe", methods=READ, content_types=ANY_BODY)
@answers_errors
def connector_card():
    admin = caller(ADMIN_ROLES)
    return services.get_connector_service().card(admin.site_id)


@app.route("/connectors/stripe/connect", methods=["POST"])
@answers_errors
def connect():
    admin = caller(ADMIN_ROLES)
    options = parse_connect_request(json_body())
    url = services.get_connector_service().begin_connect(admin.site_id, admin.user_id, **options)
    return {"authorize_url": url}


@app.route("/connectors/stripe", methods=["DELETE"], content_types=ANY_BODY)
@answers_errors
def disconnect():
    admin = caller(ADMIN_ROLES)
    return services.get_connector_service().disconnect(admin.site_id)


@app.route("/connectors/stripe/settings", methods=["PUT"])
@answers_errors
def save_portal_settings():
    admin = caller(ADMIN_ROLES)
    settings = parse_portal_settings(json_body(required=True))
    return services.get_portal_service().save_settings(admin.site_id, settings)


@app.route("/connectors/stripe/sync", methods=["POST"], content_types=ANY_BODY)
@answers_errors
def sync_now():
    admin = caller(ADMIN_ROLES)
    connector = services.get_connector_service()
    services.get_import_service().sync(admin.site_id)
    return Response(body=connector.card(admin.site_id), status_code=202)


@app.route("/connectors/stripe/unmatched", methods=READ, content_types=ANY_BODY)
@answers_errors
def unmatched_subscriptions():
    admin = caller(ADMIN_ROLES)
    query = app.current_request.query_params or {}
    return services.get_unmatched_service().unmatched(
        admin.site_id, parse_limit(query.get("limit")), decode_cursor(query.get("cursor")))


@app.route("/connectors/stripe/unmatched/{subscription_id}/link", methods=["POST"])
@answers_errors
def link_unmatched(subscription_id):
    admin = caller(ADMIN_ROLES)
    body = json_body(required=True)
    if not isinstance(body, dict) or set(body) - {"user_id"}:
        raise InvalidRequest("The body must be {\"user_id\": \"...\"}")
    return services.get_unmatched_service().link(admin.site_id, unquote(subscription_id), body.get("user_id"),
                                                 by=admin.user_id)


@app.route("/connectors/stripe/links/{subscription_id}", methods=["DELETE"], content_types=ANY_BODY)
@answers_errors
def unlink_subscription(subscription_id):
    admin = caller(ADMIN_ROLES)
    return services.get_unmatched_service().unlink(admin.site_id, unquote(subscription_id), by=admin.user_id)


@app.route("/billing/portal", methods=READ, content_types=ANY_BODY)
@answers_errors
def billing_portal():
    member = member_caller()
    return services.get_portal_service().availability(member)


@app.route("/billing/portal/sessions", methods=["POST"])
@answers_errors
def billing_portal_session():
    member = member_caller()
    return_url = parse_session_request(json_body())
    return services.get_portal_service().open_session(member, return_url)


@app.route("/access", methods=READ, content_types=ANY_BODY)
@answers_errors
def own_access():
    member = member_caller()
    return services.get_access_service().entitlements_of(member.site_id, member.user_id)


@app.route("/access/history", methods=READ, content_types=ANY_BODY)
@answers_errors
def own_access_history():
    member = member_caller()
    query = app.current_request.query_params or {}
    return services.get_access_history().of_member(
        member.site_id, member.user_id, parse_limit(query.get("limit")), decode_history_cursor(query.get("cursor")))


@app.route("/access/{user_id}", methods=READ, content_types=ANY_BODY)
@answers_errors
def member_access(user_id):
    admin = caller(ADMIN_ROLES)
    return services.get_access_service().entitlements_of(admin.site_id, unquote(user_id))


@app.route("/members", methods=READ, content_types=ANY_BODY)
@answers_errors
def find_members():
    admin = caller(ADMIN_ROLES)
    query = app.current_request.query_params or {}
    return services.get_member_search().by_email(admin.site_id, query.get("email"))


@app.route("/access/{user_id}/history", methods=READ, content_types=ANY_BODY)
@answers_errors
def member_access_history(user_id):
    admin = caller(ADMIN_ROLES)
    query = app.current_request.query_params or {}
    return services.get_access_history().of_member(
        admin.site_id, unquote(user_id), parse_limit(query.get("limit")),
        decode_history_cursor(query.get("cursor")))


# The bounce reads no body: whatever Content-Type the browser names, it
# answers its 302 (Chalice would refuse all but JSON with a 415).
@app.route(CALLBACK_PATH, methods=READ, content_types=["*/*"])
@answers_errors
def oauth_callback_bounce():
    """Stripe sends the admin's browser here; the UI's page completes the
    connection in the admin's own session. Nothing is read, used up, stored
    or logged: the query holds a live code and state."""
    query = raw_query_string(app.current_request)
    return Response(body="", status_code=302, headers={
        "Location": get_settings().app_base_url + CALLBACK_PAGE + ("?" + query if query else ""),
        "Referrer-Policy": "no-referrer",
    })


def raw_query_string(request) -> str:
    """The query string as the browser sent it. A REST API's proxy event has
    only the decoded parameters (the local server and HTTP APIs also give the
    raw string): they are encoded again as Stripe encodes its redirect."""
    raw = request.to_original_event().get("rawQueryString")
    if isinstance(raw, str):
        return raw
    params = request.query_params
    if not params:
        return ""
    return urlencode([(name, value) for name in params for value in params.getlist(name)])


@app.route(CALLBACK_PATH, methods=["POST"])
@answers_errors
def complete_connect():
    admin = caller(ADMIN_ROLES)
    body = json_body()
    if body is None:
        # No body (or `null`) carries no state: the state check refuses it.
        body = {}
    elif not isinstance(body, dict):
        # Nor does an array or a string, but that is a malformed request,
        # not a state that failed: nothing was presented, nothing is used up.
        raise InvalidRequest("The body must be a JSON object")
    return services.get_connector_service().complete_connect(
        admin.site_id, admin.user_id, body.get("state"), body.get("code"), body.get("error"))


# The signature is checked on the raw body before anything else, its
# Content-Type included: Stripe sends JSON, and a forged delivery is an
# invalid_signature whatever type it names.
@app.route(WEBHOOK_PATH, methods=["POST"], content_types=ANY_BODY)
@answers_errors
def stripe_webhook():
    """Verified, checked and queued; handled by stripe_events."""
    request = app.current_request
    try:
        services.get_deliveries().acknowledge(request.raw_body or b"", request.headers.get("stripe-signature"))
    except QueueFailure:
        # Stripe must deliver the event again: a 500 (not a 502) is what tells it so.
        logger.exception("A Stripe event could not be queued")
        return error_response(500, "internal_error", "The event could not be queued; Stripe will retry")
    return {"received": True}


# One event per invocation. Chalice 1.34's on_sqs_message cannot ask for
# ReportBatchItemFailures (it takes the queue, batch size, batching window
# and maximum concurrency only), so in a larger batch one event that raises
# would send them all back: the others' effects are safe to repeat (each
# comes back a duplicate, dropped by its event record), but every try counts
# towards each message's MAX_RECEIVES, so a poisoned event would take its
# batch to the dead-letter queue with it. (The merged template could add
# ReportBatchItemFailures, with the function returning the failed ids; the
# events of a batch would still share one timeout.) Larger batches would not
# go faster either: the concurrency bound (infra/template.yaml) and Stripe's
# rate limit set the pace of a burst, not the number of invocations.
@app.on_sqs_message(queue=EVENTS_QUEUE, batch_size=1, name="stripe_events")
def stripe_events(event):
    """Stripe's events the webhook queued, handled under the contract's
    rules. What raises comes again, and after MAX_RECEIVES tries goes to the
    dead-letter queue."""
    for record in event:
        message = record.to_dict()
        services.get_queued_events().handle(record.body, receive_count(message), sent_at(message))


@app.lambda_function(name="announce_access")
def announce_access(event, context):
    """The entitlements table's stream → AccessGranted / AccessRevoked. The
    event source mapping reports batch item failures (infra/README.md), so a
    failed record and those after it come again, in order."""
    return services.get_announcer().handle_stream(event.get("Records") or [])


@app.schedule(SWEEP_SCHEDULE, name="expire_access")
def expire_access(event):
    """End access whose access_until has passed, after asking Stripe."""
    context = event.context
    time_left = (lambda: context.get_remaining_time_in_millis() / 1000) if context else None
    return services.get_sweep().run(time_left, queue=services.get_work_queue()).as_dict()


@app.schedule(ENDPOINT_WATCH_SCHEDULE, name="watch_webhook_endpoint")
def watch_webhook_endpoint(event):
    """Read the platform's Connect webhook endpoint from Stripe: a disabled
    one raises the WebhookEndpointDisabled alarm and shows on every card."""
    return services.get_event_health().check_endpoint()


@app.schedule(CATCH_UP_SCHEDULE, name="catch_up")
def catch_up(event):
    """One catch-up message per connected account on the work queue."""
    return services.get_catch_up().fan_out()


@app.on_sqs_message(queue=SYNC_QUEUE, batch_size=1, name="sync_worker")
def sync_worker(event):
    """Imports, a page per message, each account's catch-up, and the shards
    of a sweep that had more due than one run takes. What raises
    comes again (and after MAX_RECEIVES tries goes to the dead-letter queue)."""
    context = event.context
    time_left = (lambda: context.get_remaining_time_in_millis() / 1000) if context else None
    for record in event:
        message = json.loads(record.body)
        kind = message.get("kind") if isinstance(message, dict) else None
        if kind == IMPORT_MESSAGE:
            services.get_import_worker().handle(message, receive_count(record.to_dict()))
        elif kind == CATCH_UP_MESSAGE:
            services.get_catch_up().catch_up(message)
        elif kind == SWEEP_MESSAGE:
            services.get_sweep().run_shard(int(message["shard"]), int(message["due_before"]),
                                           time_left=time_left, queue=services.get_work_queue())
        else:
            raise ValueError("Unknown work message kind %r" % (kind,))
