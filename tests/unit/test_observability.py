"""The log keys, the masking of what authenticates anyone, the counts, and
which of them are written where."""
import io
import json
import logging
import threading

import pytest

from chalicelib import observability
from chalicelib.errors import ConfigurationError
from chalicelib.observability import MASK, Metrics, PlainFormatter, redact
from chalicelib.settings import log_format, metrics_emitted

LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "stripe-connector-dev"}


@pytest.mark.parametrize("secret", [
    "sk_live_51Hxq2LkQ9v0aBcDeFgHiJkLmN",
    "rk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "whsec_3f8a9b2c1d0e4f5a6b7c8d9e0f1a2b3c",
    "ac_JqFzX0aBcD9eFgHiJkLmNoPq",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ.kq3v9Zl_8uW-2yTn5bXcR0aE1fG",
    "v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
])
def test_what_looks_like_a_secret_is_masked_wherever_it_stands(secret):
    masked = redact('Stripe said: "%s", twice (%s)' % (secret, secret))
    assert secret not in masked
    assert masked.count(MASK) == 2


def test_a_bearer_header_value_is_masked_whatever_the_token_looks_like():
    assert redact("Authorization: Bearer opaque-token-123") == "Authorization: " + MASK


def test_stripe_ids_and_masked_keys_stay_readable():
    text = "acct_1Nv0FG evt_1Abc sub_9 cus_ana sk_test_****1234 account ac_"
    assert redact(text) == text


def test_a_registered_secret_is_masked_whatever_its_shape():
    observability.register_secret("plain-words-as-a-jwt-secret-of-some-length")
    assert redact("key=plain-words-as-a-jwt-secret-of-some-length;") == "key=%s;" % MASK


def test_keys_are_bound_per_context_and_reach_each_record_once():
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(observability.ContextKeys())
    handler.setFormatter(PlainFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("chalicelib.tests_observability")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        observability.start_invocation(site_id="site_a")
        observability.bind(stripe_event_id="evt_1", user_id=None)
        seen_elsewhere = {}
        thread = threading.Thread(target=lambda: seen_elsewhere.update(observability.bound()))
        thread.start()
        thread.join()
        logger.warning("Handled with sk_test_abcDEF123")
        observability.unbind("stripe_event_id")
        logger.warning("Next")
    finally:
        logger.removeHandler(handler)
        observability.start_invocation()
    assert seen_elsewhere == {}
    assert handler.stream.getvalue().splitlines() == [
        "WARNING Handled with %s  [site_id=site_a stripe_event_id=evt_1]" % MASK,
        "WARNING Next  [site_id=site_a]"]


def test_an_unknown_key_is_refused():
    with pytest.raises(ValueError):
        observability.bind(password="x")


def test_counts_are_summed_per_name_and_forgotten_once_flushed(capsys):
    metrics = Metrics(emit=True)
    metrics.count("WebhookHandled")
    metrics.count("WebhookHandled")
    metrics.count("SweepLeft", 0)
    assert metrics.flush() == {"WebhookHandled": 2, "SweepLeft": 0}
    (line,) = capsys.readouterr().out.splitlines()
    written = json.loads(line)
    assert written["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CustomerHub/StripeConnector"
    assert (written["WebhookHandled"], written["SweepLeft"], written["service"]) == ([2.0], [0.0], "stripe-connector")
    assert metrics.flush() == {}
    assert capsys.readouterr().out == ""


def test_counts_not_emitted_are_forgotten_all_the_same(capsys):
    metrics = Metrics(emit=False)
    metrics.count("WebhookHandled")
    assert metrics.flush() == {"WebhookHandled": 1}
    assert metrics.flush() == {}
    assert capsys.readouterr().out == ""


def test_a_metric_that_cannot_be_written_is_logged_not_raised(capsys, caplog):
    metrics = Metrics(emit=True)
    metrics.count("")
    assert metrics.flush() == {"": 1}
    assert "Writing the metrics failed" in caplog.text


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    (LAMBDA, "json"),
    ({"LOG_FORMAT": "plain", **LAMBDA}, "plain"),
    ({"LOG_FORMAT": "JSON"}, "json"),
])
def test_logs_are_json_in_lambda_and_left_to_the_host_elsewhere(environ, expected):
    assert log_format(environ) == expected


def test_an_unknown_log_format_refuses_to_start():
    with pytest.raises(ConfigurationError, match="LOG_FORMAT"):
        log_format({"LOG_FORMAT": "xml"})


@pytest.mark.parametrize("environ, expected", [
    ({}, False),
    (LAMBDA, True),
    ({"POWERTOOLS_METRICS_DISABLED": "true", **LAMBDA}, False),
    ({"POWERTOOLS_METRICS_DISABLED": "false"}, True),
])
def test_metrics_are_written_in_lambda_unless_powertools_is_told_otherwise(environ, expected):
    assert metrics_emitted(environ) is expected
