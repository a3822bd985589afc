"""The bearer token, checked without any AWS or HTTP around it."""
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


def test_member_is_forbidden_on_admin_roles():
    caller = check("Bearer " + token(role="member"))
    with pytest.raises(Forbidden):
        require_role(caller, ADMIN_ROLES)


def test_garbage_token_is_unauthorized():
    with pytest.raises(Unauthorized):
        check("Bearer not.a.jwt")
