"""The CustomerHub bearer token: who is calling, for which site, in what role."""
from dataclasses import dataclass
from typing import Iterable, Optional

import jwt

from chalicelib.errors import Forbidden, Unauthorized

AUDIENCE = "stripe-connector"
ALGORITHM = "HS256"
ROLES = ("owner", "admin", "member")
ADMIN_ROLES = ("owner", "admin")
# Ids become DynamoDB keys and log fields: a bound keeps both sane.
MAX_ID_LENGTH = 256
MAX_EMAIL_LENGTH = 254


@dataclass(frozen=True)
class Caller:
    user_id: str
    site_id: str
    role: str
    email: Optional[str] = None
    # CustomerHub has confirmed that the user owns `email`: only then may the
    # email find the user's Stripe customer or claim their subscriptions.
    email_verified: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


def authenticate(authorization: Optional[str], secret: str, issuer: str) -> Caller:
    """The caller a `Bearer` Authorization header proves, or Unauthorized."""
    if not authorization:
        raise Unauthorized("An Authorization: Bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("An Authorization: Bearer token is required")
    try:
        # The algorithm list is pinned: a token naming any other `alg`,
        # `none` included, fails here before its signature is looked at.
        claims = jwt.decode(
            token.strip(), secret, algorithms=[ALGORITHM], audience=AUDIENCE,
            issuer=issuer, options={"require": ["exp", "iss", "aud", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The token has expired") from exc
    except (jwt.InvalidTokenError, ValueError, OverflowError, RecursionError) as exc:
        # PyJWT lets a few malformed payloads through as plain Python errors:
        # an `exp` of Infinity (int() overflows), JSON nested past the
        # recursion limit.
        raise Unauthorized("The token is not valid") from exc
    _check_claim_types(claims)
    return Caller(user_id=claims["sub"], site_id=claims["site"], role=claims["role"],
                  email=claims.get("email"), email_verified=claims.get("email_verified") is True)


def _check_claim_types(claims: dict) -> None:
    """Refuse claims of the wrong JSON type: PyJWT converts a numeric string
    `exp` with int(), and a string "false" is a true value in Python."""
    for name in ("exp", "iat", "nbf"):
        if name in claims and not _is_number(claims[name]):
            raise Unauthorized("The token's %s is not a number" % name)
    for name in ("sub", "site"):
        if not _is_id(claims.get(name)):
            raise Unauthorized("The token does not name a user and a site")
    if claims.get("role") not in ROLES:
        raise Unauthorized("The token does not name a role")
    email = claims.get("email")
    if email is not None and not (_is_text(email) and len(email) <= MAX_EMAIL_LENGTH):
        raise Unauthorized("The token's email is not valid")
    if "email_verified" in claims and not isinstance(claims["email_verified"], bool):
        raise Unauthorized("The token's email_verified is not true or false")


def require_role(caller: Caller, roles: Iterable[str]) -> Caller:
    if caller.role not in roles:
        raise Forbidden("This needs the role %s" % " or ".join(roles))
    return caller


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_id(value) -> bool:
    return _is_text(value) and len(value) <= MAX_ID_LENGTH


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
