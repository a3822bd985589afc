"""Stripe's webhook addresses, the only sources the web ACL lets reach
POST /webhooks/stripe (infra/README.md, The web ACL).

    make stripe-ips                                  # or:
    python -m infra.stripe_ips --refresh [--url URL]
    python -m infra.stripe_ips                       # the addresses the file lists

They live in one file, infra/stripe_webhook_ips.json, in the shape of
Stripe's own (https://stripe.com/files/ips/ips_webhooks.json, also listed at
https://docs.stripe.com/ips): `{"WEBHOOKS": ["<IPv4 address>", ...]}`.
infra/package.py fills the web ACL's IP set from it when it packages; the
template does not repeat them.

--refresh downloads Stripe's list, checks it (a JSON object whose WEBHOOKS
is a non-empty list of distinct IPv4 addresses) and rewrites the file only
when the list is valid and names other addresses than the file does,
printing those added and removed. Any other answer (an HTTP error, no
answer, not JSON, an entry that is not an IPv4 address) leaves the file as
it was. Stripe announces a change of its addresses seven days ahead on its
api-announce mailing list; a delivery from an address the file lacks is
refused 403 and raises the webhook-unlisted-address alarm.

Exit status: 0 when the file holds Stripe's list (rewritten or already),
1 when Stripe's answer or the file is not a valid list, 2 for bad arguments.
"""
import argparse
import ipaddress
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from typing import Any, List, Optional, Sequence, TextIO
from urllib.parse import urlsplit

from infra.project import ROOT

STRIPE_URL = "https://stripe.com/files/ips/ips_webhooks.json"
ADDRESSES_PATH = os.path.join(ROOT, "infra", "stripe_webhook_ips.json")
KEY = "WEBHOOKS"
# Stripe's list is well under a kilobyte; a larger answer is not it.
MAX_ANSWER_BYTES = 1 << 20
TIMEOUT_SECONDS = 20
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class InvalidAddressList(Exception):
    """A list that is not Stripe's webhook addresses as its file gives them."""


class DownloadFailed(Exception):
    """Stripe's list could not be read: no answer, or an HTTP error."""


def addresses_of(document: Any) -> List[str]:
    """The addresses of a document shaped like Stripe's file, in its order."""
    if not isinstance(document, dict) or KEY not in document:
        raise InvalidAddressList("not a JSON object with a %s list" % KEY)
    listed = document[KEY]
    if not isinstance(listed, list) or not listed:
        raise InvalidAddressList("%s is not a list of addresses (or is empty)" % KEY)
    seen = set()
    for entry in listed:
        if not _is_ipv4(entry):
            raise InvalidAddressList("%s holds %s, which is not an IPv4 address" % (KEY, json.dumps(entry)))
        if entry in seen:
            raise InvalidAddressList("%s lists %s twice" % (KEY, entry))
        seen.add(entry)
    return list(listed)


def _is_ipv4(entry: Any) -> bool:
    if not isinstance(entry, str):
        return False
    try:
        # As written: no leading zeros, no spaces, no mask.
        return str(ipaddress.IPv4Address(entry)) == entry
    except ValueError:
        return False


def load(path: str = ADDRESSES_PATH) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError) as exc:
        raise InvalidAddressList("%s cannot be read: %s" % (os.path.relpath(path), exc)) from exc
    return addresses_of(document)


def ip_set_addresses(addresses: Sequence[str]) -> List[str]:
    """The addresses as an AWS::WAFv2::IPSet takes them: one /32 each."""
    return ["%s/32" % address for address in addresses]


def render(addresses: Sequence[str]) -> str:
    return json.dumps({KEY: list(addresses)}, indent=2) + "\n"


def download(url: str = STRIPE_URL, timeout: float = TIMEOUT_SECONDS) -> List[str]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    # A proxy of the environment serves Stripe, never this machine's loopback.
    opener = urllib.request.build_opener(*(
        [urllib.request.ProxyHandler({})] if urlsplit(url).hostname in LOOPBACK_HOSTS else []))
    try:
        with opener.open(request, timeout=timeout) as answer:
            body = answer.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise DownloadFailed("%s answered %d %s" % (url, exc.code, exc.reason)) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadFailed("%s could not be read: %s" % (url, getattr(exc, "reason", exc))) from exc
    if len(body) > MAX_ANSWER_BYTES:
        raise InvalidAddressList("the answer is over %d bytes" % MAX_ANSWER_BYTES)
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidAddressList("the answer is not JSON") from exc
    return addresses_of(document)


def refresh(path: str = ADDRESSES_PATH, url: str = STRIPE_URL, out: Optional[TextIO] = None) -> bool:
    """Rewrites the file with Stripe's list when it is valid and names other
    addresses; whether it did. Raises, the file untouched, otherwise."""
    out = out or sys.stdout
    fresh = download(url)
    try:
        current = load(path)
    except InvalidAddressList as exc:
        print("%s: %s; writing Stripe's list" % (os.path.relpath(path), exc), file=out)
        current = []
    added = [address for address in fresh if address not in current]
    removed = [address for address in current if address not in fresh]
    name = os.path.relpath(path)
    if not added and not removed:
        print("%s: Stripe lists the same %d addresses; unchanged" % (name, len(fresh)), file=out)
        return False
    _write(path, render(fresh))
    print("%s: %d addresses (was %d)" % (name, len(fresh), len(current)), file=out)
    for address in added:
        print("  + %s" % address, file=out)
    for address in removed:
        print("  - %s" % address, file=out)
    print("Package and deploy the stage for its web ACL to take them (make deploy).", file=out)
    return True


def _write(path: str, text: str) -> None:
    # Replaced whole, never left half-written.
    scratch = tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(path)), suffix=".json",
                                          delete=False, encoding="utf-8")
    try:
        with scratch:
            scratch.write(text)
        os.chmod(scratch.name, 0o644)
        os.replace(scratch.name, path)
    except BaseException:
        os.unlink(scratch.name)
        raise


def _url_problem(url: str) -> Optional[str]:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return None
    return "%s is neither https nor http on loopback" % url


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m infra.stripe_ips", description=__doc__.split("\n")[0])
    parser.add_argument("--refresh", action="store_true",
                        help="download Stripe's list and rewrite the file when it is valid and changed")
    parser.add_argument("--url", default=STRIPE_URL, help="where Stripe's list is (default %(default)s)")
    parser.add_argument("--file", default=ADDRESSES_PATH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    problem = _url_problem(args.url)
    if problem:
        parser.error(problem)
    try:
        if args.refresh:
            refresh(args.file, args.url, out)
        else:
            addresses = load(args.file)
            print("%s: %d addresses" % (os.path.relpath(args.file), len(addresses)), file=out)
            for address in addresses:
                print("  %s" % address, file=out)
    except DownloadFailed as exc:
        print("python -m infra.stripe_ips: %s; %s left as it was" % (exc, os.path.relpath(args.file)), file=err)
        return 1
    except InvalidAddressList as exc:
        where = "%s's answer" % args.url if args.refresh else os.path.relpath(args.file)
        kept = "; %s left as it was" % os.path.relpath(args.file) if args.refresh else ""
        print("python -m infra.stripe_ips: %s is not Stripe's webhook address list: %s%s" % (where, exc, kept),
              file=err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
