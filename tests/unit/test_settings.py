"""Configuration: read once, secrets from SSM in AWS, weak tokens refused."""
import boto3
import pytest
from moto import mock_aws

from chalicelib.errors import ConfigurationError
from chalicelib.observability import redact
from chalicelib.settings import get_settings, load_settings
from infra.project import stage_environment, stages
from tests import helpers


def base_env(**overrides):
    env = helpers.environment("http://127.0.0.1:9")
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_defaults_fill_what_the_environment_leaves_out():
    env = base_env(STRIPE_API_BASE=None, STRIPE_CONNECT_BASE=None)
    settings = load_settings(env)
    assert settings.stripe_api_base == "https://api.stripe.com"
    assert settings.stripe_connect_base == "https://connect.stripe.com"
    assert settings.auth_jwt_issuer == "customerhub"
    assert settings.access_event_bus == "default"
    assert settings.return_url_origins == ()
    assert settings.aws_endpoint_url is None
    assert settings.stripe_timeout_seconds == 8


def test_jwt_secret_shorter_than_32_bytes_refuses_to_start():
    with pytest.raises(ConfigurationError, match="AUTH_JWT_SECRET"):
        load_settings(base_env(AUTH_JWT_SECRET="x" * 31))


@pytest.mark.parametrize("name", ["STRIPE_SECRET_KEY", "STRIPE_CLIENT_ID", "STRIPE_WEBHOOK_SECRET",
                                  "AUTH_JWT_SECRET", "APP_BASE_URL", "OAUTH_REDIRECT_URI"])
def test_a_missing_required_setting_is_named(name):
    with pytest.raises(ConfigurationError, match=name):
        load_settings(base_env(**{name: None}))


def test_return_url_origins_are_split_and_trimmed():
    settings = load_settings(base_env(RETURN_URL_ORIGINS=" https://a.test/ , https://B.test:8443 ,"))
    assert settings.return_url_origins == ("https://a.test", "https://b.test:8443")


@pytest.mark.parametrize("entry", [
    "help.example", "https://a.test/x", "https://a.test?q=1", "https://a.test#f", "https://u:p@a.test",
    "http://members.example", "ftp://a.test", "https://", "https://a.test:99999", "javascript:alert(1)",
    "//a.test", "https:a.test", "https://a .test",
])
def test_a_return_url_origins_entry_that_is_not_an_origin_refuses_to_start(entry):
    with pytest.raises(ConfigurationError, match="RETURN_URL_ORIGINS"):
        load_settings(base_env(RETURN_URL_ORIGINS="https://fine.test," + entry))


@pytest.mark.parametrize("value", ["app.customerhub.test", "https://app.test/ui", "http://app.test",
                                   "https://app.test?x=1"])
def test_an_app_base_url_that_is_not_an_origin_refuses_to_start(value):
    with pytest.raises(ConfigurationError, match="APP_BASE_URL"):
        load_settings(base_env(APP_BASE_URL=value))


@pytest.mark.parametrize("value,origin", [("http://localhost:3000", "http://localhost:3000"),
                                          ("http://127.0.0.1:3000/", "http://127.0.0.1:3000"),
                                          ("https://App.Test:8443", "https://app.test:8443")])
def test_app_base_url_may_be_plain_http_on_loopback_only(value, origin):
    assert load_settings(base_env(APP_BASE_URL=value)).app_base_url == origin


def test_stripe_timeout_seconds_may_be_shortened():
    assert load_settings(base_env(STRIPE_TIMEOUT_SECONDS="2.5")).stripe_timeout_seconds == 2.5


@pytest.mark.parametrize("raw", ["0", "-1", "eight", "nan", "inf"])
def test_a_stripe_timeout_that_is_not_a_positive_number_refuses_to_start(raw):
    with pytest.raises(ConfigurationError, match="STRIPE_TIMEOUT_SECONDS"):
        load_settings(base_env(STRIPE_TIMEOUT_SECONDS=raw))


def test_stripe_requests_per_second_is_20_unless_set():
    assert load_settings(base_env(STRIPE_REQUESTS_PER_SECOND=None)).stripe_requests_per_second == 20
    assert load_settings(base_env(STRIPE_REQUESTS_PER_SECOND="80")).stripe_requests_per_second == 80
    assert load_settings(base_env(STRIPE_REQUESTS_PER_SECOND=" 2.5 ")).stripe_requests_per_second == 2.5


@pytest.mark.parametrize("raw", ["0", "-5", "twenty", "nan", "inf", "1e999"])
def test_a_stripe_requests_per_second_that_is_not_a_positive_number_refuses_to_start(raw):
    with pytest.raises(ConfigurationError, match="STRIPE_REQUESTS_PER_SECOND must be a positive number"):
        load_settings(base_env(STRIPE_REQUESTS_PER_SECOND=raw))


@pytest.mark.parametrize("stage", stages())
def test_every_stage_sets_a_stripe_ceiling_the_settings_accept_under_stripes_test_mode_limit(stage):
    environment = dict(base_env(), STRIPE_REQUESTS_PER_SECOND=stage_environment(stage)["STRIPE_REQUESTS_PER_SECOND"])
    assert 0 < load_settings(environment).stripe_requests_per_second < 25


def test_secrets_never_appear_in_the_settings_repr():
    text = repr(load_settings(base_env()))
    for secret in (helpers.SECRET_KEY, helpers.WEBHOOK_SECRET, helpers.JWT_SECRET):
        assert secret not in text


def test_secrets_named_by_param_are_read_from_ssm_securestrings(monkeypatch):
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        for name, value in (("/connector/stripe-key", "sk_live_from_ssm"),
                            ("/connector/webhook", "whsec_from_ssm"),
                            ("/connector/jwt", "j" * 40)):
            ssm.put_parameter(Name=name, Value=value, Type="SecureString")
        for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "AUTH_JWT_SECRET"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("STRIPE_SECRET_KEY_PARAM", "/connector/stripe-key")
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_PARAM", "/connector/webhook")
        monkeypatch.setenv("AUTH_JWT_SECRET_PARAM", "/connector/jwt")
        get_settings.cache_clear()
        settings = get_settings()
        assert settings.stripe_secret_key == "sk_live_from_ssm"
        assert settings.stripe_webhook_secret == "whsec_from_ssm"
        assert settings.auth_jwt_secret == "j" * 40
        assert get_settings() is settings


def test_a_missing_ssm_parameter_is_a_configuration_error_when_its_secret_is_first_needed(monkeypatch):
    with mock_aws():
        monkeypatch.setenv("AUTH_JWT_SECRET_PARAM", "/connector/absent")
        get_settings.cache_clear()
        settings = get_settings()
        with pytest.raises(ConfigurationError, match="/connector/absent"):
            settings.auth_jwt_secret
        # Not remembered: the next token check asks SSM again.
        with pytest.raises(ConfigurationError, match="/connector/absent"):
            settings.auth_jwt_secret


class RecordedParameters:
    """SSM as the settings see it: SecureStrings by name, and the names read."""

    def __init__(self, **values):
        self.values = {"/connector/" + name: value for name, value in values.items()}
        self.read = []

    def __call__(self, name):
        self.read.append(name)
        return self.values[name]


def in_ssm(**overrides):
    """The test environment with the three secrets named by *_PARAM instead."""
    env = base_env(STRIPE_SECRET_KEY=None, STRIPE_WEBHOOK_SECRET=None, AUTH_JWT_SECRET=None,
                   STRIPE_SECRET_KEY_PARAM="/connector/stripe-key", STRIPE_WEBHOOK_SECRET_PARAM="/connector/webhook",
                   AUTH_JWT_SECRET_PARAM="/connector/jwt")
    env.update(overrides)
    return env


def parameters(**overrides):
    values = {"stripe-key": "sk_live_from_ssm", "webhook": "whsec_from_ssm", "jwt": "j" * 40}
    values.update(overrides)
    return RecordedParameters(**values)


def test_no_secret_is_read_from_ssm_until_it_is_needed_and_each_only_once():
    ssm = parameters()
    settings = load_settings(in_ssm(), ssm)
    assert ssm.read == []
    assert settings.stripe_secret_key == "sk_live_from_ssm"
    assert settings.stripe_secret_key == "sk_live_from_ssm"
    assert ssm.read == ["/connector/stripe-key"]
    assert settings.auth_jwt_secret == "j" * 40
    assert ssm.read == ["/connector/stripe-key", "/connector/jwt"]


def test_a_short_jwt_secret_in_ssm_refuses_the_first_token_check_and_not_what_never_checks_one():
    ssm = parameters(jwt="x" * 31)
    settings = load_settings(in_ssm(), ssm)
    assert settings.stripe_secret_key == "sk_live_from_ssm"
    with pytest.raises(ConfigurationError, match="AUTH_JWT_SECRET .*/connector/jwt.* at least 32 bytes"):
        settings.auth_jwt_secret


def test_each_secret_is_masked_in_the_logs_as_it_is_read_and_not_before():
    masked = []
    settings = load_settings(in_ssm(), parameters(), on_secret=masked.append)
    assert masked == []
    settings.stripe_webhook_secret
    assert masked == ["whsec_from_ssm"]


def test_a_secret_read_from_ssm_when_first_needed_is_masked_in_every_log_line_after(monkeypatch):
    key = "customerhub-token-key-read-from-ssm-0123456789"
    with mock_aws():
        boto3.client("ssm", region_name="us-east-1").put_parameter(Name="/connector/jwt", Value=key,
                                                                   Type="SecureString")
        monkeypatch.setenv("AUTH_JWT_SECRET_PARAM", "/connector/jwt")
        get_settings.cache_clear()
        settings = get_settings()
        assert redact("key " + key) == "key " + key
        assert settings.auth_jwt_secret == key
        assert redact("key " + key) == "key [redacted]"


def test_an_ssm_parameter_named_without_ssm_to_read_it_refuses_to_start():
    with pytest.raises(ConfigurationError, match="STRIPE_SECRET_KEY_PARAM is set but SSM is not reachable"):
        load_settings(in_ssm())


IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "stripe-connector-prod-APIHandler-1A2B3C4D5E6F"}
# As .chalice/config.json and the README leave them for the operator to fill in.
PLACEHOLDERS = ["ca_REPLACE_WITH_LIVE_CONNECT_CLIENT_ID", "ca_replace_me", "ca_…", "ca_placeholder"]


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_in_lambda_a_placeholder_client_id_refuses_to_start_naming_it(value):
    with pytest.raises(ConfigurationError, match="STRIPE_CLIENT_ID is a placeholder"):
        load_settings(base_env(STRIPE_CLIENT_ID=value, **IN_LAMBDA))


@pytest.mark.parametrize("name,value", [
    ("APP_BASE_URL", "https://REPLACE-with-the-ui.example"),
    ("OAUTH_REDIRECT_URI", "https://api.REPLACE.example/connectors/stripe/oauth/callback"),
    ("STRIPE_WEBHOOK_ENDPOINT_ID", "we_REPLACE_ME"),
    ("CONNECTIONS_TABLE", "stripe-connector-REPLACE-connections"),
    ("AUTH_JWT_SECRET_PARAM", "/customerhub/REPLACE/stripe-connector/auth-jwt-secret"),
])
def test_in_lambda_a_setting_containing_replace_refuses_to_start_naming_it(name, value):
    with pytest.raises(ConfigurationError, match="%s is a placeholder" % name):
        load_settings(base_env(**{name: value}, **IN_LAMBDA))


@pytest.mark.parametrize("name,value", [
    ("STRIPE_WEBHOOK_SECRET", "whsec_placeholder"), ("STRIPE_SECRET_KEY", "sk_test_placeholder"),
    ("STRIPE_SECRET_KEY", "sk_live_PLACEHOLDER"), ("STRIPE_SECRET_KEY", "sk_…"),
    ("AUTH_JWT_SECRET", "REPLACE_WITH_32_BYTES_OF_RANDOMNESS_0123456789"),
])
def test_in_lambda_a_placeholder_secret_refuses_to_start_naming_it_but_never_its_value(name, value):
    with pytest.raises(ConfigurationError, match="%s is a placeholder" % name) as raised:
        load_settings(base_env(**{name: value}, **IN_LAMBDA))
    assert value not in str(raised.value)


def test_in_lambda_a_placeholder_secret_in_ssm_refuses_when_it_is_read_naming_its_parameter_not_its_value():
    settings = load_settings(in_ssm(**IN_LAMBDA), parameters(webhook="whsec_placeholder"))
    assert settings.stripe_secret_key == "sk_live_from_ssm"
    with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_SECRET .*/connector/webhook.* placeholder") as raised:
        settings.stripe_webhook_secret
    assert "whsec_placeholder" not in str(raised.value)


def test_placeholders_are_accepted_outside_lambda_as_the_local_stack_and_the_tests_run():
    settings = load_settings(base_env(STRIPE_CLIENT_ID="ca_REPLACE_WITH_DEV_CONNECT_CLIENT_ID",
                                      STRIPE_WEBHOOK_SECRET="whsec_placeholder"))
    assert settings.stripe_client_id == "ca_REPLACE_WITH_DEV_CONNECT_CLIENT_ID"
    assert settings.stripe_webhook_secret == "whsec_placeholder"


def test_in_lambda_real_values_start():
    settings = load_settings(base_env(**IN_LAMBDA))
    assert settings.stripe_client_id == helpers.CLIENT_ID
    assert settings.stripe_webhook_secret == helpers.WEBHOOK_SECRET


def test_the_stripe_event_source_is_none_unless_named():
    assert load_settings(base_env()).stripe_event_source is None
    named = load_settings(base_env(STRIPE_EVENT_SOURCE="aws.partner/stripe.com/ed_test_1"))
    assert named.stripe_event_source == "aws.partner/stripe.com/ed_test_1"


@pytest.mark.parametrize("raw", ["aws.partner/stripe.com/ed 1", "x" * 257])
def test_a_stripe_event_source_that_is_not_an_event_source_name_refuses_to_start(raw):
    with pytest.raises(ConfigurationError, match="STRIPE_EVENT_SOURCE"):
        load_settings(base_env(STRIPE_EVENT_SOURCE=raw))


def test_the_watched_webhook_endpoint_is_optional_and_must_be_a_we_id():
    assert load_settings(base_env()).stripe_webhook_endpoint_id is None
    assert load_settings(base_env(STRIPE_WEBHOOK_ENDPOINT_ID="we_1Abc")).stripe_webhook_endpoint_id == "we_1Abc"
    for raw in ("whsec_1", "we_", "we_1 2", "we_" + "x" * 300, "acct_1"):
        with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_ENDPOINT_ID"):
            load_settings(base_env(STRIPE_WEBHOOK_ENDPOINT_ID=raw))
