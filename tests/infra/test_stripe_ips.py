"""Stripe's webhook addresses: infra/stripe_webhook_ips.json, refreshed by
`python -m infra.stripe_ips --refresh` (make stripe-ips) from a stand-in of
Stripe's file on loopback, and filled into the packaged template's IP set
by infra/package.py."""
import ipaddress
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from infra import stripe_ips
from infra.package import STRIPE_IP_SET, fill_stripe_webhook_ips
from infra.stripe_ips import InvalidAddressList

LISTED = ["3.18.12.63", "3.130.192.231", "13.235.14.237"]
# Stripe has added one address and dropped another.
CHANGED = ["3.18.12.63", "13.235.14.237", "54.187.216.72"]


class StripeFiles:
    """Stripe's file server on loopback, answering what the test sets."""

    def __init__(self):
        self.status, self.body, self.requests = 200, b"", []
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                files.requests.append(self.path)
                self.send_response(files.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(files.body)))
                self.end_headers()
                self.wfile.write(files.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/files/ips/ips_webhooks.json" % self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, body, status=200):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stripe_files():
    files = StripeFiles()
    yield files
    files.stop()


@pytest.fixture
def address_file(tmp_path):
    path = tmp_path / "stripe_webhook_ips.json"
    path.write_text(stripe_ips.render(LISTED))
    return path


def refresh(url, path, capsys):
    status = stripe_ips.main(["--refresh", "--url", url, "--file", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_repositorys_file_is_stripes_shape_with_ipv4_addresses_only():
    with open(stripe_ips.ADDRESSES_PATH) as f:
        document = json.load(f)
    assert list(document) == ["WEBHOOKS"]
    addresses = stripe_ips.load()
    assert addresses == document["WEBHOOKS"] and len(addresses) >= 10
    assert all(isinstance(ipaddress.ip_address(a), ipaddress.IPv4Address) for a in addresses)
    assert len(set(addresses)) == len(addresses)


def test_a_changed_list_rewrites_the_file_and_prints_what_was_added_and_removed(stripe_files, address_file, capsys):
    stripe_files.answer({"WEBHOOKS": CHANGED})
    status, out, err = refresh(stripe_files.url, address_file, capsys)
    assert (status, err) == (0, "")
    assert stripe_ips.load(str(address_file)) == CHANGED
    assert address_file.read_text() == stripe_ips.render(CHANGED)
    assert "  + 54.187.216.72" in out and "  - 3.130.192.231" in out
    assert "3 addresses (was 3)" in out and "deploy" in out
    assert stripe_files.requests == ["/files/ips/ips_webhooks.json"]


def test_the_same_list_leaves_the_file_as_it_was(stripe_files, address_file, capsys):
    # The same addresses in another order: the IP set is a set.
    stripe_files.answer({"WEBHOOKS": list(reversed(LISTED))})
    before = (address_file.read_bytes(), os.stat(address_file).st_mtime_ns)
    status, out, err = refresh(stripe_files.url, address_file, capsys)
    assert (status, err) == (0, "")
    assert "same 3 addresses; unchanged" in out
    assert (address_file.read_bytes(), os.stat(address_file).st_mtime_ns) == before


BAD_ANSWERS = [
    ("an HTTP error", b'{"error": "unavailable"}', 503, "answered 503"),
    ("not JSON", b"<html>maintenance</html>", 200, "the answer is not JSON"),
    ("no WEBHOOKS", {"API": LISTED}, 200, "not a JSON object with a WEBHOOKS list"),
    ("an empty list", {"WEBHOOKS": []}, 200, "is not a list of addresses (or is empty)"),
    ("a list that is not one", {"WEBHOOKS": "3.18.12.63"}, 200, "is not a list of addresses"),
    ("a host name", {"WEBHOOKS": LISTED + ["hooks.stripe.com"]}, 200, '"hooks.stripe.com", which is not an IPv4'),
    ("an IPv6 address", {"WEBHOOKS": LISTED + ["2600:1f18::1"]}, 200, '"2600:1f18::1", which is not an IPv4'),
    ("a range", {"WEBHOOKS": LISTED + ["54.187.0.0/16"]}, 200, '"54.187.0.0/16", which is not an IPv4'),
    ("a number", {"WEBHOOKS": LISTED + [12]}, 200, "holds 12, which is not an IPv4"),
    ("an address twice", {"WEBHOOKS": LISTED + [LISTED[0]]}, 200, "lists 3.18.12.63 twice"),
    ("an answer far too long", b" " * (stripe_ips.MAX_ANSWER_BYTES + 1), 200, "over 1048576 bytes"),
]


@pytest.mark.parametrize("what, body, status, words", BAD_ANSWERS, ids=[b[0] for b in BAD_ANSWERS])
def test_a_bad_answer_leaves_the_file_untouched_exits_1_and_says_why(what, body, status, words, stripe_files,
                                                                      address_file, capsys):
    stripe_files.answer(body, status)
    before = (address_file.read_bytes(), os.stat(address_file).st_mtime_ns)
    code, out, err = refresh(stripe_files.url, address_file, capsys)
    assert code == 1 and out == ""
    assert words in err and "left as it was" in err, err
    assert (address_file.read_bytes(), os.stat(address_file).st_mtime_ns) == before
    assert sorted(os.listdir(address_file.parent)) == [address_file.name]  # no scratch file left behind


def test_no_answer_at_all_leaves_the_file_untouched_and_exits_1(address_file, capsys):
    files = StripeFiles()
    files.stop()  # nothing listens there any more
    before = address_file.read_bytes()
    code, out, err = refresh(files.url, address_file, capsys)
    assert code == 1 and "could not be read" in err and "left as it was" in err
    assert address_file.read_bytes() == before


def test_a_file_that_is_not_a_list_is_replaced_by_stripes(stripe_files, address_file, capsys):
    address_file.write_text("{}")
    stripe_files.answer({"WEBHOOKS": CHANGED})
    status, out, err = refresh(stripe_files.url, address_file, capsys)
    assert status == 0 and stripe_ips.load(str(address_file)) == CHANGED
    assert "writing Stripe's list" in out


@pytest.mark.parametrize("url", ["http://stripe.com/files/ips/ips_webhooks.json", "ftp://127.0.0.1/ips.json",
                                 "file:///etc/hosts"])
def test_a_url_that_is_neither_https_nor_loopback_is_refused_before_anything_is_read(url, address_file, capsys):
    with pytest.raises(SystemExit) as exit:
        stripe_ips.main(["--refresh", "--url", url, "--file", str(address_file)])
    assert exit.value.code == 2
    assert "neither https nor http on loopback" in capsys.readouterr().err


def test_without_refresh_the_command_lists_the_file_or_says_what_is_wrong_with_it(address_file, capsys):
    assert stripe_ips.main(["--file", str(address_file)]) == 0
    assert capsys.readouterr().out.split("\n")[1:4] == ["  %s" % a for a in LISTED]
    address_file.write_text('{"WEBHOOKS": ["3.18.12.63", "999.1.1.1"]}')
    assert stripe_ips.main(["--file", str(address_file)]) == 1
    assert '"999.1.1.1", which is not an IPv4 address' in capsys.readouterr().err


def _sam(tmp_path):
    """A packaged template as Chalice writes it, with the IP set left empty."""
    path = tmp_path / "sam.yaml"
    path.write_text(yaml.safe_dump({"Resources": {
        STRIPE_IP_SET: {"Type": "AWS::WAFv2::IPSet", "Properties": {
            "Addresses": [], "IPAddressVersion": "IPV4", "Scope": "REGIONAL"}},
        "Topic": {"Type": "AWS::SNS::Topic"}}}, allow_unicode=True))
    return path


def test_packaging_fills_the_ip_set_with_the_files_addresses_as_chalice_writes_yaml(tmp_path, address_file):
    sam = _sam(tmp_path)
    assert fill_stripe_webhook_ips(str(sam), str(address_file)) == 3
    filled = yaml.safe_load(sam.read_text())
    assert filled["Resources"][STRIPE_IP_SET]["Properties"]["Addresses"] == [a + "/32" for a in LISTED]
    assert sam.read_text() == yaml.safe_dump(filled, allow_unicode=True)
    once = sam.read_bytes()
    fill_stripe_webhook_ips(str(sam), str(address_file))
    assert sam.read_bytes() == once


def test_packaging_refuses_a_bad_address_file_and_leaves_the_template_as_it_was(tmp_path, address_file):
    sam = _sam(tmp_path)
    before = sam.read_bytes()
    address_file.write_text('{"WEBHOOKS": ["3.18.12.63", "10.0.0.0/8"]}')
    with pytest.raises(InvalidAddressList, match="10.0.0.0/8"):
        fill_stripe_webhook_ips(str(sam), str(address_file))
    assert sam.read_bytes() == before


def test_the_refreshed_file_packages(stripe_files, address_file, tmp_path, capsys):
    stripe_files.answer({"WEBHOOKS": CHANGED})
    assert refresh(stripe_files.url, address_file, capsys)[0] == 0
    sam = _sam(tmp_path)
    fill_stripe_webhook_ips(str(sam), str(address_file))
    assert yaml.safe_load(sam.read_text())["Resources"][STRIPE_IP_SET]["Properties"]["Addresses"] == [
        a + "/32" for a in CHANGED]


def test_make_stripe_ips_runs_the_refresh():
    with open(os.path.join(os.path.dirname(stripe_ips.ADDRESSES_PATH), "..", "Makefile")) as f:
        makefile = f.read()
    assert "\nstripe-ips: $(INSTALLED)\n\t$(BIN)/python -m infra.stripe_ips --refresh\n" in makefile
    assert " stripe-ips " in makefile.split("\n.PHONY:", 1)[1].split("\n", 1)[0]
