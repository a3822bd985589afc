"""The bearer token, checked without any AWS or HTTP around it."""
import hashlib
import hmac
import time

import jwt
import pytest

from chalicelib.auth import ADMIN_ROLES, authenticate, require_role
from chalicelib.errors import Forbidden, Unauthorized
from tests.helpers import JWT_SECRET, token


def check(header):
    return authenticate(header, JWT_SECRET, "customerhub")


def test_valid_admin_token_names_user_site_role_and_email():
    caller = check("Bearer " + token(site="site_x", role="owner", sub="u_9", email="a@b.test"))
    assert (caller.user_id, caller.site_id, caller.role, caller.email) == ("u_9", "site_x", "owner", "a@b.test")
    assert caller.is_admin


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_missing_or_non_bearer_authorization_is_unauthorized(header):
    with pytest.raises(Unauthorized):
        check(header)


def test_token_signed_with_another_secret_is_unauthorized():
    with pytest.raises(Unauthorized):
        check("Bearer " + token(secret="another-secret-that-is-long-enough-0000"))


def test_unsigned_alg_none_token_is_unauthorized():
    claims = {"sub": "u", "site": "s", "role": "admin", "iss": "customerhub",
              "aud": "stripe-connector", "exp": int(time.time()) + 600}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(Unauthorized):
        check("Bearer " + unsigned)


def test_token_with_another_hmac_algorithm_is_unauthorized():
    with pytest.raises(Unauthorized):
        check("Bearer " + token(algorithm="HS512"))


def test_expired_token_is_unauthorized():
    with pytest.raises(Unauthorized, match="expired"):
        check("Bearer " + token(exp=int(time.time()) - 10))


@pytest.mark.parametrize("claims", [
    {"aud": "another-service"}, {"iss": "someone-else"}, {"exp": None}, {"aud": None},
    {"iss": None}, {"sub": None}, {"site": None}, {"role": None}, {"role": "superuser"},
    {"site": ""}, {"site": 42}, {"email": 7},
])
def test_token_missing_or_with_wrong_claims_is_unauthorized(claims):
    with pytest.raises(Unauthorized):
        check("Bearer " + token(**claims))


# A fixed expiry in 2100: one read from the clock would name the cases
# differently in each of make test's processes, and pytest-xdist refuses that.
FAR_FUTURE = 4102444800


@pytest.mark.parametrize("claims", [
    {"exp": str(FAR_FUTURE)}, {"exp": True}, {"exp": [FAR_FUTURE]},
    {"iat": "now"}, {"nbf": "0"}, {"email_verified": "true"}, {"email_verified": "false"},
    {"email_verified": 1}, {"email_verified": None}, {"sub": "u" * 257}, {"site": "s" * 6000},
    {"sub": "   "}, {"role": ["admin"]}, {"email": "x" * 250 + "@b.test"},
], ids=lambda claims: "%s=%s" % next(iter(claims.items())) if len(repr(claims)) < 60 else next(iter(claims)))
def test_claims_of_the_wrong_json_type_or_absurd_length_are_unauthorized(claims):
    body = {"sub": "u", "site": "s", "role": "admin", "iss": "customerhub", "aud": "stripe-connector",
            "exp": int(time.time()) + 600}
    body.update(claims)
    with pytest.raises(Unauthorized):
        check("Bearer " + jwt.encode(body, JWT_SECRET, algorithm="HS256"))


def signed_payload(payload: bytes) -> str:
    """A token whose payload is these bytes, signed with the right key."""
    signing_input = (jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}') + b"."
                     + jwt.utils.base64url_encode(payload))
    signature = hmac.new(JWT_SECRET.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


@pytest.mark.parametrize("payload", [
    b'{"sub": "u", "site": "s", "role": "admin", "iss": "customerhub", "aud": "stripe-connector", '
    b'"exp": Infinity}',
    b'{"sub": "u", "site": "s", "role": "admin", "iss": "customerhub", "aud": "stripe-connector", '
    b'"exp": NaN}',
    b"[" * 100000 + b"]" * 100000,
], ids=["exp Infinity", "exp NaN", "nested 100,000 deep"])
def test_a_signed_payload_python_cannot_hold_is_unauthorized_not_a_crash(payload):
    with pytest.raises(Unauthorized):
        check("Bearer " + signed_payload(payload))


def test_email_verified_is_true_only_when_the_token_says_true():
    assert check("Bearer " + token(email="a@b.test", email_verified=True)).email_verified is True
    assert check("Bearer " + token(email="a@b.test", email_verified=False)).email_verified is False
    assert check("Bearer " + token(email="a@b.test")).email_verified is False


def test_member_is_forbidden_on_admin_roles():
    caller = check("Bearer " + token(role="member"))
    with pytest.raises(Forbidden):
        require_role(caller, ADMIN_ROLES)


def test_garbage_token_is_unauthorized():
    with pytest.raises(Unauthorized):
        check("Bearer not.a.jwt")
