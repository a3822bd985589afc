"""Handle one of Stripe's events again, read from Stripe.

    python -m infra.replay evt_… --account acct_…

For an event the connector lost after Stripe counted it delivered (its
message went to the events dead-letter queue and is gone, say), which the
catch-up will therefore not list. The event is read from Stripe with the
connected account's Stripe-Account and handed to the handling a queued
delivery gets (WebhookReceiver.handle, received now): the same rules, the
same writes and announcements. An event handled before is a duplicate and
changes nothing, so a replay is safe to repeat. Stripe keeps events for 30
days.

The settings are the stage's, from the environment as the functions have it
(.chalice/config.json's stage variables, the secrets from SSM through
`*_PARAM`), with AWS credentials for the stage's account; `make replay` runs
it against the local stack.

Exit status: 0 when the event was handled, a duplicate or ignored; 1 when
Stripe has no such event, or Stripe or AWS failed (nothing of it is then
recorded as done: run it again); 2 for ids not shaped like Stripe's or
settings that are missing.
"""
import argparse
import sys
from typing import Any, Dict, List, Optional, TextIO

from chalicelib import observability, services
from chalicelib.access import is_stripe_id
from chalicelib.clock import utc_now
from chalicelib.deliveries import ignored_at_once
from chalicelib.errors import ConfigurationError, ConnectorError
from chalicelib.webhooks import DUPLICATE, HANDLED

USAGE_ERROR = 2
FAILED = 1


class InvalidId(ValueError):
    """An id on the command line that is not one of Stripe's of its kind."""


def stripe_id(value: str, prefix: str, kind: str) -> str:
    if not (value.startswith(prefix) and len(value) > len(prefix) and is_stripe_id(value)):
        raise InvalidId("%r is not a Stripe %s id (%s…)" % (value, kind, prefix))
    return value


def about(event: Dict[str, Any]) -> str:
    """The event in a few words: its type, the object it carries, the account."""
    carried = event.get("data", {}).get("object")
    if isinstance(carried, dict) and carried.get("id"):
        subject = "%s %s" % (carried.get("object") or "object", carried["id"])
    else:
        subject = "nothing"
    return "%s about %s on %s" % (event["type"], subject, event.get("account"))


def outcome_line(event: Dict[str, Any], outcome: str) -> str:
    if outcome == HANDLED:
        return "handled: %s (%s)" % (event["id"], about(event))
    if outcome == DUPLICATE:
        return "duplicate: %s (%s) was handled before; nothing changed" % (event["id"], about(event))
    why = ignored_at_once(event) or "the log says why"
    return "ignored: %s (%s): %s" % (event["id"], about(event), why)


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.replay", description=__doc__.split("\n")[0])
    parser.add_argument("event_id", metavar="EVENT_ID", help="the event, evt_…")
    parser.add_argument("--account", required=True, metavar="ACCT", help="the connected account, acct_…")
    args = parser.parse_args(argv)
    try:
        event_id = stripe_id(args.event_id, "evt_", "event")
        account_id = stripe_id(args.account, "acct_", "account")
    except InvalidId as exc:
        print("replay: %s" % exc, file=err)
        return USAGE_ERROR

    try:
        gateway = services.get_stripe_gateway()
        receiver = services.get_webhook_receiver()
    except ConfigurationError as exc:
        print("replay: the settings are incomplete: %s" % exc, file=err)
        return USAGE_ERROR
    try:
        event = gateway.event(account_id, event_id)
    except ConnectorError as exc:
        print("replay: %s; nothing was handled" % exc, file=err)
        return FAILED
    if event is None:
        print("replay: Stripe has no event %s on %s (it keeps events for 30 days); nothing was handled"
              % (event_id, account_id), file=err)
        return FAILED
    try:
        outcome = receiver.handle(event, received_at=utc_now())
    except ConnectorError as exc:
        print("replay: %s (%s) could not be handled: %s; nothing of it is recorded as done, "
              "so it can be replayed again" % (event_id, about(event), exc), file=err)
        return FAILED
    print(outcome_line(event, outcome), file=out)
    return 0


if __name__ == "__main__":
    observability.configure_logging(observability.PLAIN)
    sys.exit(main())
