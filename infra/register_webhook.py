"""Register the stage's Stripe Connect webhook endpoint, or bring it up to date.

    python -m infra.register_webhook --stage dev --url https://<api>/api/webhooks/stripe

The endpoint listens to connected accounts (`connect=True`), speaks the API
version the connector pins and asks for exactly the events it handles. It is
found again by its URL and the stage in its metadata: a second run updates
its events. Stripe shows a new endpoint's signing secret once, in the answer
to its creation: it is printed with the SSM parameter it goes into. An
endpoint of an older API version cannot be moved to the pinned one: a new one
is made, and the old one is to be deleted once the new secret is in place.

The platform's secret key is STRIPE_SECRET_KEY, else the stage's SSM parameter
(STRIPE_SECRET_KEY_PARAM in .chalice/config.json, read with the caller's AWS
credentials). STRIPE_API_BASE points at another Stripe (tests).
"""
import argparse
import os
import sys
from typing import Any, Callable, Dict, List, Optional, TextIO
from urllib.parse import urlsplit

from chalicelib.stripe_gateway import API_VERSION, make_client
from chalicelib.webhooks import HANDLED_EVENTS
from infra.project import stage_environment

# The metadata key that marks an endpoint as this connector's, with its stage.
MARKER = "customerhub_stripe_connector"
WEBHOOK_PATH = "/webhooks/stripe"


def create_params(url: str, stage: str) -> Dict[str, Any]:
    return {
        "url": url,
        "connect": True,
        "api_version": API_VERSION,
        "enabled_events": list(HANDLED_EVENTS),
        "description": "CustomerHub Stripe Connector (%s)" % stage,
        "metadata": {MARKER: stage},
    }


def update_params(stage: str) -> Dict[str, Any]:
    # Neither `connect` nor `api_version` can change after creation.
    return {
        "enabled_events": list(HANDLED_EVENTS),
        "disabled": False,
        "description": "CustomerHub Stripe Connector (%s)" % stage,
    }


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or not parts.path.endswith(WEBHOOK_PATH):
        raise ValueError("The URL must be https and end with %s (the stack's WebhookURL output)" % WEBHOOK_PATH)
    if parts.query or parts.fragment:
        raise ValueError("The URL must have no query or fragment")
    return url


def register(client: Any, stage: str, url: str, secret_parameter: str, out: TextIO) -> Dict[str, Any]:
    """Create or update the endpoint; what was done, for the caller and tests."""
    endpoints = list(client.v1.webhook_endpoints.list({"limit": 100}).auto_paging_iter())
    same_url = [e for e in endpoints if e.url == url]
    ours = [e for e in same_url if (e.to_dict().get("metadata") or {}).get(MARKER) == stage]
    current = [e for e in ours if e.api_version == API_VERSION]
    for other in same_url:
        if other not in ours:
            out.write("Left alone: %s has this URL but was not made by this command for %s.\n" % (other.id, stage))
    if current:
        endpoint = client.v1.webhook_endpoints.update(current[0].id, update_params(stage))
        out.write("Updated %s: %d events, API version %s.\n" % (endpoint.id, len(HANDLED_EVENTS), API_VERSION))
        out.write("Its signing secret is already in SSM %s (the Dashboard shows it again).\n" % secret_parameter)
        return {"updated": endpoint.id}
    endpoint = client.v1.webhook_endpoints.create(create_params(url, stage))
    out.write("Created %s: Connect events to %s, API version %s.\n" % (endpoint.id, url, API_VERSION))
    out.write("Its signing secret, shown this once, goes into SSM %s:\n\n" % secret_parameter)
    out.write("  aws ssm put-parameter --type SecureString --overwrite --name %s --value '%s'\n\n"
              % (secret_parameter, endpoint.secret))
    replaced = [e.id for e in ours]
    for old in replaced:
        out.write("Then delete %s (an older API version) in the Dashboard or with\n"
                  "  curl -X DELETE https://api.stripe.com/v1/webhook_endpoints/%s -u \"$STRIPE_SECRET_KEY:\"\n"
                  % (old, old))
    return {"created": endpoint.id, "replaces": replaced}


def platform_key(environment: Dict[str, str], read_parameter: Callable[[str], str]) -> str:
    if os.environ.get("STRIPE_SECRET_KEY"):
        return os.environ["STRIPE_SECRET_KEY"]
    return read_parameter(environment["STRIPE_SECRET_KEY_PARAM"])


def read_ssm_parameter(name: str) -> str:
    import boto3

    return boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.register_webhook", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, help="the Chalice stage (.chalice/config.json)")
    parser.add_argument("--url", required=True, help="https://<api>/api/webhooks/stripe: the stack's WebhookURL")
    args = parser.parse_args(argv)
    try:
        environment = stage_environment(args.stage)
        url = check_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    client = make_client(platform_key(environment, read_ssm_parameter), "",
                         os.environ.get("STRIPE_API_BASE", "https://api.stripe.com"), "https://connect.stripe.com")
    register(client, args.stage, url, environment["STRIPE_WEBHOOK_SECRET_PARAM"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
