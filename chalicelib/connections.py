"""The connector lifecycle: connect through Stripe OAuth, show the card,
disconnect, and follow what Stripe says about the account."""
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import List, Optional

from pynamodb.exceptions import DeleteError, PutError

from chalicelib.clock import Clock, iso, utc_now
from chalicelib.errors import (AccountNotConnected, ConnectionChanged, InvalidRequest, InvalidState,
                               StripeFailure)
from chalicelib.models import LOST_RACE, ConnectionModel, OAuthStateModel
from chalicelib.stripe_gateway import AuthorizedAccount, StripeGateway

logger = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
LANDINGS = ("login", "register")
MAX_EMAIL_LENGTH = 254

CONNECTED = "connected"
DISCONNECTED = "disconnected"
BY_ADMIN = "disconnected_by_admin"
REVOKED = "revoked_in_stripe"

@dataclass(frozen=True)
class CallbackOutcome:
    """Where the admin's browser goes after Stripe: `reason` is None on success."""
    reason: Optional[str] = None

    @property
    def connected(self) -> bool:
        return self.reason is None


class ConnectionStore:
    def get(self, site_id: str) -> Optional[ConnectionModel]:
        try:
            return ConnectionModel.get(site_id, consistent_read=True)
        except ConnectionModel.DoesNotExist:
            return None

    def sites_connected_to(self, account_id: str) -> List[ConnectionModel]:
        return list(ConnectionModel.account_index.query(account_id))

    def save(self, connection: ConnectionModel) -> None:
        # The version attribute makes this a conditional write: a concurrent
        # connect, disconnect or revocation is never silently overwritten.
        try:
            connection.save()
        except PutError as exc:
            if exc.cause_response_code == LOST_RACE:
                raise ConnectionChanged("The connector was changed by another request meanwhile; "
                                        "reload it and try again") from exc
            raise


class OAuthStateStore:
    def issue(self, site_id: str, user_id: str, now: datetime) -> str:
        state = secrets.token_urlsafe(32)
        OAuthStateModel(
            _hash(state), site_id=site_id, user_id=user_id, created_at=now,
            expires_at=now + STATE_LIFETIME,
        ).save(condition=OAuthStateModel.state_hash.does_not_exist())
        return state

    def consume(self, state: Optional[str], now: datetime) -> OAuthStateModel:
        """The state's record, deleted so that it can never be used again."""
        if not state or len(state) > 200:
            raise InvalidState("The state is missing")
        try:
            record = OAuthStateModel.get(_hash(state), consistent_read=True)
        except OAuthStateModel.DoesNotExist as exc:
            raise InvalidState("The state is unknown or already used") from exc
        try:
            # Only one of two racing callbacks gets past this delete.
            record.delete(condition=OAuthStateModel.state_hash.exists())
        except DeleteError as exc:
            if exc.cause_response_code == LOST_RACE:
                raise InvalidState("The state was used meanwhile") from exc
            raise
        if record.expires_at <= now:
            raise InvalidState("The state has expired")
        return record


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def connector_card(connection: Optional[ConnectionModel]) -> dict:
    connected = connection is not None and connection.status == CONNECTED
    return {
        "status": CONNECTED if connected else DISCONNECTED,
        "account": {
            "id": connection.account_id,
            "display_name": connection.display_name or connection.account_id,
            "livemode": bool(connection.livemode),
        } if connected else None,
        "connected_at": iso(connection.connected_at) if connected else None,
        "disconnected_reason": None if connected or connection is None else connection.disconnected_reason,
        "settings": {
            "portal_enabled": bool(connected and connection.portal_enabled),
            "privacy_policy_url": connection.privacy_policy_url if connection else None,
            "terms_of_service_url": connection.terms_of_service_url if connection else None,
            "allow_cancel": bool(connection.allow_cancel) if connection else False,
        },
    }


def parse_connect_request(body: Optional[dict]) -> dict:
    """The options of POST /connectors/stripe/connect, checked."""
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object")
    unknown = sorted(set(body) - {"email", "landing", "always_prompt"})
    if unknown:
        raise InvalidRequest("Unknown field: %s" % ", ".join(unknown))
    email = body.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email
                              or len(email) > MAX_EMAIL_LENGTH or email != email.strip()):
        raise InvalidRequest("email must be an email address")
    landing = body.get("landing")
    if landing is not None and landing not in LANDINGS:
        raise InvalidRequest("landing must be 'login' or 'register'")
    always_prompt = body.get("always_prompt", False)
    if not isinstance(always_prompt, bool):
        raise InvalidRequest("always_prompt must be true or false")
    return {"email": email, "landing": landing, "always_prompt": always_prompt}


class ConnectorService:
    def __init__(self, connections: ConnectionStore, states: OAuthStateStore,
                 stripe: StripeGateway, redirect_uri: str, clock: Clock = utc_now):
        self._connections = connections
        self._states = states
        self._stripe = stripe
        self._redirect_uri = redirect_uri
        self._clock = clock

    def card(self, site_id: str) -> dict:
        return connector_card(self._connections.get(site_id))

    def begin_connect(self, site_id: str, user_id: str, email: Optional[str] = None,
                      landing: Optional[str] = None, always_prompt: bool = False) -> str:
        state = self._states.issue(site_id, user_id, self._clock())
        return self._stripe.authorize_url(state, self._redirect_uri, email=email,
                                          landing=landing, always_prompt=always_prompt)

    def complete_connect(self, state: Optional[str], code: Optional[str],
                         error: Optional[str]) -> CallbackOutcome:
        """Finish the OAuth round trip. Every failure leaves the stored
        connection exactly as it was."""
        try:
            started = self._states.consume(state, self._clock())
        except InvalidState as exc:
            logger.info("OAuth callback refused: %s", exc)
            return CallbackOutcome("invalid_state")
        if error:
            logger.info("Stripe answered the OAuth request of site %s with %s",
                        started.site_id, error[:100])
            return CallbackOutcome("access_denied" if error == "access_denied" else "stripe_error")
        if not code:
            logger.warning("Stripe's OAuth redirect for site %s carried no code", started.site_id)
            return CallbackOutcome("stripe_error")
        try:
            authorized = self._stripe.exchange_code(code)
        except StripeFailure as exc:
            logger.warning("OAuth token exchange for site %s failed: %s", started.site_id, exc)
            return CallbackOutcome("stripe_error")
        try:
            profile = self._stripe.account_profile(authorized.account_id)
        except StripeFailure as exc:
            logger.warning("Reading account %s for site %s failed: %s",
                           authorized.account_id, started.site_id, exc)
            self._undo_authorization(authorized.account_id, started.site_id)
            return CallbackOutcome("stripe_error")
        try:
            replaced = self._store_connection(started, authorized, profile.display_name)
        except Exception:
            logger.exception("Storing the connection of site %s failed", started.site_id)
            self._undo_authorization(authorized.account_id, started.site_id)
            return CallbackOutcome("internal_error")
        if replaced:
            self._release(replaced, started.site_id)
        logger.info("Site %s connected to %s", started.site_id, authorized.account_id)
        return CallbackOutcome()

    def _store_connection(self, started: OAuthStateModel, authorized: AuthorizedAccount,
                          display_name: str) -> Optional[str]:
        """Save the new connection; the account it replaced, if another."""
        connection = self._connections.get(started.site_id) or ConnectionModel(started.site_id)
        previous = connection.account_id if connection.status == CONNECTED else None
        if previous != authorized.account_id:
            # The portal configuration lives on the old account: the new one
            # starts with the portal off (its URLs stay for the admin to reuse).
            connection.portal_enabled = False
            connection.portal_configuration_id = None
        connection.status = CONNECTED
        connection.account_id = authorized.account_id
        connection.last_account_id = authorized.account_id
        connection.display_name = display_name
        connection.livemode = authorized.livemode
        connection.connected_at = self._clock()
        connection.connected_by = started.user_id
        connection.disconnected_at = None
        connection.disconnected_reason = None
        self._connections.save(connection)
        return previous if previous and previous != authorized.account_id else None

    def _others_connected_to(self, account_id: str, site_id: str) -> bool:
        return any(other.site_id != site_id for other in self._connections.sites_connected_to(account_id))

    def _undo_authorization(self, account_id: str, site_id: str) -> None:
        """Deauthorize an account we authorized but could not use, unless a
        site (this one included, from before) is connected to it."""
        try:
            if self._connections.sites_connected_to(account_id):
                return
            self._stripe.deauthorize(account_id)
        except AccountNotConnected:
            pass
        except Exception:
            logger.exception("Could not deauthorize %s after the failed connect of site %s",
                             account_id, site_id)

    def _release(self, account_id: str, site_id: str) -> None:
        """Deauthorize an account the site no longer uses, unless another site
        still does. Failure here is logged: the new connection stands."""
        try:
            if not self._others_connected_to(account_id, site_id):
                self._stripe.deauthorize(account_id)
        except AccountNotConnected:
            pass
        except Exception:
            logger.exception("Could not deauthorize %s, replaced on site %s", account_id, site_id)

    def disconnect(self, site_id: str) -> dict:
        connection = self._connections.get(site_id)
        if connection is None or connection.status != CONNECTED:
            return connector_card(connection)
        account_id = connection.account_id
        if not self._others_connected_to(account_id, site_id):
            try:
                self._stripe.deauthorize(account_id)
            except AccountNotConnected:
                logger.info("Account %s was already disconnected at Stripe", account_id)
        self._mark_disconnected(connection, BY_ADMIN)
        logger.info("Site %s disconnected from %s by an admin", site_id, account_id)
        return connector_card(connection)

    def _mark_disconnected(self, connection: ConnectionModel, reason: str) -> None:
        connection.status = DISCONNECTED
        connection.account_id = None
        connection.disconnected_at = self._clock()
        connection.disconnected_reason = reason
        connection.portal_enabled = False
        self._connections.save(connection)

    def account_deauthorized(self, account_id: str, livemode: bool, event_created: int) -> int:
        """Stripe says the platform lost access to the account: every site
        connected to it before the event was created is disconnected."""
        revoked = 0
        for connection in self._connections.sites_connected_to(account_id):
            if bool(connection.livemode) != bool(livemode):
                continue
            # An event about an earlier connection (one the admin ended, or
            # one replaced since) must not end the connection made after it.
            if event_created < int(connection.connected_at.timestamp()):
                logger.info("Ignoring a deauthorization of %s older than site %s's connection",
                            account_id, connection.site_id)
                continue
            self._mark_disconnected(connection, REVOKED)
            revoked += 1
            logger.info("Site %s lost %s: revoked in Stripe", connection.site_id, account_id)
        return revoked

    def account_updated(self, account_id: str, livemode: bool) -> int:
        """Refresh the account's name on every site connected to it, read from
        Stripe rather than from the event, which may be older than what we have."""
        connections = [c for c in self._connections.sites_connected_to(account_id)
                       if bool(c.livemode) == bool(livemode)]
        if not connections:
            return 0
        try:
            profile = self._stripe.account_profile(account_id)
        except AccountNotConnected:
            logger.info("Account %s is no longer readable; its deauthorization will follow", account_id)
            return 0
        updated = 0
        for connection in connections:
            if connection.display_name != profile.display_name:
                connection.display_name = profile.display_name
                self._connections.save(connection)
                updated += 1
        return updated
