"""The CustomerHub bearer token: who is calling, for which site, in what role."""
from dataclasses import dataclass
from typing import Iterable, Optional

import jwt

from chalicelib.errors import Forbidden, Unauthorized

AUDIENCE = "stripe-connector"
ALGORITHM = "HS256"
ROLES = ("owner", "admin", "member")
ADMIN_ROLES = ("owner", "admin")


@dataclass(frozen=True)
class Caller:
    user_id: str
    site_id: str
    role: str
    email: Optional[str] = None

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
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("The token is not valid") from exc
    user_id, site_id, role = claims.get("sub"), claims.get("site"), claims.get("role")
    email = claims.get("email")
    if not _is_text(user_id) or not _is_text(site_id) or role not in ROLES:
        raise Unauthorized("The token does not name a user, a site and a role")
    if email is not None and not _is_text(email):
        raise Unauthorized("The token's email is not valid")
    return Caller(user_id=user_id, site_id=site_id, role=role, email=email)


def require_role(caller: Caller, roles: Iterable[str]) -> Caller:
    if caller.role not in roles:
        raise Forbidden("This needs the role %s" % " or ".join(roles))
    return caller


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())
