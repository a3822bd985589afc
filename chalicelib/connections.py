"""The connector lifecycle: connect through Stripe OAuth, show the card,
disconnect, and follow what Stripe says about the account."""
import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Tuple

from pynamodb.exceptions import DeleteError, PutError

from chalicelib.clock import Clock, iso, utc_now
from chalicelib.event_health import EventHealth
from chalicelib.errors import (AccessDenied, AccountNotConnected, ConnectionChanged, InvalidRequest,
                               InvalidState, StripeFailure)
from chalicelib.models import (CONNECTED, DEFAULT_PAST_DUE_GRACE_DAYS, DISCONNECTED, LOST_RACE, ConnectionModel,
                               OAuthStateModel)
from chalicelib.stripe_gateway import AuthorizedAccount, StripeGateway

logger = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
MAX_STATE_LENGTH = 200
# Reads and writes of one connection before a race is the caller's to retry.
UPDATE_ATTEMPTS = 3
LANDINGS = ("login", "register")
MAX_EMAIL_LENGTH = 254

BY_ADMIN = "disconnected_by_admin"
REVOKED = "revoked_in_stripe"

class Importer(Protocol):
    """What the connector needs of imports (chalicelib/imports.py)."""

    def start(self, connection: ConnectionModel) -> Optional[dict]: ...

    def sync_of(self, connection: Optional[ConnectionModel]) -> Optional[dict]: ...


class PortalCarrier(Protocol):
    """What a connection needs of the portal's configurations (chalicelib/portal.py)."""

    def carry_over(self, connection: ConnectionModel, account_id: str) -> str: ...

    def abandon(self, account_id: str, configuration_id: str) -> None: ...


class ConnectionStore:
    def get(self, site_id: str) -> Optional[ConnectionModel]:
        try:
            return ConnectionModel.get(site_id, consistent_read=True)
        except ConnectionModel.DoesNotExist:
            return None

    def get_many(self, site_ids: Iterable[str]) -> Dict[str, Optional[ConnectionModel]]:
        """Each site's connection (None: none), in one BatchGetItem per hundred."""
        wanted = list(dict.fromkeys(site_ids))
        found: Dict[str, Optional[ConnectionModel]] = dict.fromkeys(wanted)
        if wanted:
            found.update((c.site_id, c) for c in ConnectionModel.batch_get(wanted, consistent_read=True))
        return found

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

    def consume(self, state: Any, site_id: str, user_id: str, now: datetime) -> OAuthStateModel:
        """The state's record, deleted so that it can never be used again. A
        state issued to another site or user is refused and left for its
        owner: presenting it must not let anyone else spoil it."""
        if not isinstance(state, str) or not state or len(state) > MAX_STATE_LENGTH:
            raise InvalidState("The state is missing")
        try:
            record = OAuthStateModel.get(_hash(state), consistent_read=True)
        except OAuthStateModel.DoesNotExist as exc:
            raise InvalidState("The state is unknown or already used") from exc
        if record.site_id != site_id or record.user_id != user_id:
            raise InvalidState("The state was issued to another admin")
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


def grace_of(connection: Optional[ConnectionModel]) -> timedelta:
    """How long the site's members keep access while Stripe retries a
    failed payment (the admin's past_due_grace_days)."""
    return timedelta(days=_grace_days(connection))


def _grace_days(connection: Optional[ConnectionModel]) -> int:
    days = connection.past_due_grace_days if connection is not None else None
    return DEFAULT_PAST_DUE_GRACE_DAYS if days is None else int(days)


def connector_card(connection: Optional[ConnectionModel], sync: Optional[dict] = None,
                   events: Optional[dict] = None) -> dict:
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
            "past_due_grace_days": _grace_days(connection),
        },
        # The latest import of the connected account's subscriptions.
        "sync": sync if connected else None,
        # Whether the account's events reach the connector (chalicelib/event_health.py).
        "events": events if connected else None,
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
    always_prompt = body.get("always_prompt")
    if "always_prompt" in body and not isinstance(always_prompt, bool):
        raise InvalidRequest("always_prompt must be true or false")
    return {"email": email, "landing": landing, "always_prompt": always_prompt}


class ConnectorService:
    def __init__(self, connections: ConnectionStore, states: OAuthStateStore,
                 stripe: StripeGateway, redirect_uri: str, imports: "Importer",
                 clock: Clock = utc_now, health: Optional[EventHealth] = None,
                 portal: Optional[PortalCarrier] = None):
        self._health = health or EventHealth(stripe, None, clock)
        self._portal = portal
        self._connections = connections
        self._imports = imports
        self._states = states
        self._stripe = stripe
        self._redirect_uri = redirect_uri
        self._clock = clock

    def card(self, site_id: str) -> dict:
        connection = self._connections.get(site_id)
        return connector_card(connection, self._imports.sync_of(connection), self._health.of(connection))

    def begin_connect(self, site_id: str, user_id: str, email: Optional[str] = None,
                      landing: Optional[str] = None, always_prompt: Optional[bool] = None) -> str:
        state = self._states.issue(site_id, user_id, self._clock())
        return self._stripe.authorize_url(state, self._redirect_uri, email=email,
                                          landing=landing, always_prompt=always_prompt)

    def complete_connect(self, site_id: str, user_id: str, state: Any, code: Any, error: Any) -> dict:
        """Finish the OAuth round trip for the admin who started it; the card.
        The state is checked before anything else and used up once it
        passes; every failure leaves the stored connection exactly as it was."""
        self._states.consume(state, site_id, user_id, self._clock())
        if (error is not None and not isinstance(error, str)) or (code is not None and not isinstance(code, str)):
            raise InvalidRequest("code and error must be strings")
        if error:
            logger.info("Stripe answered the OAuth request of site %s with %r", site_id, error[:100])
            if error == "access_denied":
                raise AccessDenied("The connection was declined at Stripe")
            raise StripeFailure("Stripe answered the authorization with %r" % error[:100])
        if not code:
            raise InvalidRequest("The body must carry Stripe's code or error")
        authorized = self._stripe.exchange_code(code)
        try:
            profile = self._stripe.account_profile(authorized.account_id)
        except StripeFailure:
            self._undo_authorization(authorized.account_id, site_id)
            raise
        connection = self._connections.get(site_id) or ConnectionModel(site_id)
        replaced = connection.account_id if connection.status == CONNECTED else None
        carried = None
        try:
            carried = self._carry_portal_over(connection, authorized.account_id)
            self._store_connection(connection, user_id, authorized, profile.display_name, carried)
        except Exception:
            if carried:
                # Before the deauthorization below, while the account can still be reached.
                self._portal.abandon(authorized.account_id, carried)
            self._undo_authorization(authorized.account_id, site_id)
            raise
        if replaced and replaced != authorized.account_id:
            self._release(replaced, site_id)
        logger.info("Site %s connected to %s", site_id, authorized.account_id)
        # Whatever the account held before it was connected here: the import
        # runs in the background and the card follows it. The connection
        # stands even when the import cannot start; the admin may start it again.
        try:
            sync = self._imports.start(connection)
        except Exception:
            logger.exception("The import for site %s could not start", site_id)
            sync = None
        return connector_card(connection, sync, self._health.of(connection))

    def _carry_portal_over(self, connection: ConnectionModel, account_id: str) -> Optional[str]:
        """When the site's portal is on and account_id replaces its connected
        account: the configuration made there with the stored settings. None
        otherwise, or when Stripe refuses it (the portal is then off on the
        new account; the connection goes ahead all the same)."""
        if (connection.status != CONNECTED or connection.account_id == account_id
                or not connection.portal_enabled):
            return None
        if self._portal is None:
            logger.warning("Site %s connects %s with its portal off: this service makes no portal "
                           "configurations", connection.site_id, account_id)
            return None
        try:
            return self._portal.carry_over(connection, account_id)
        except StripeFailure as exc:
            logger.warning("Site %s connects %s with its portal off: %s", connection.site_id, account_id, exc)
            return None

    def _store_connection(self, connection: ConnectionModel, user_id: str, authorized: AuthorizedAccount,
                          display_name: str, portal_configuration_id: Optional[str]) -> None:
        if connection.status != CONNECTED or connection.account_id != authorized.account_id:
            # The old account's configuration stays there; the new account has
            # the portal only through the one carried over to it. The URLs
            # stay for the admin to reuse either way.
            connection.portal_enabled = portal_configuration_id is not None
            connection.portal_configuration_id = portal_configuration_id
        connection.status = CONNECTED
        connection.account_id = authorized.account_id
        connection.last_account_id = authorized.account_id
        connection.display_name = display_name
        connection.livemode = authorized.livemode
        connection.connected_at = self._clock()
        connection.connected_by = user_id
        connection.disconnected_at = None
        connection.disconnected_reason = None
        self._connections.save(connection)

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

        def end_by_admin(current: ConnectionModel) -> bool:
            if current.status == CONNECTED:
                # Another connect meanwhile made a connection the admin has not seen.
                return current.account_id == account_id and self._mark_disconnected(current, BY_ADMIN)
            # Our own deauthorization makes Stripe send
            # account.application.deauthorized, which may be handled before
            # this write: the admin's reason is the true one.
            if current.disconnected_reason == REVOKED and current.last_account_id == account_id:
                current.disconnected_reason = BY_ADMIN
                return True
            return False

        connection, _ = self._update(site_id, end_by_admin, connection)
        logger.info("Site %s disconnected from %s by an admin", site_id, account_id)
        return connector_card(connection)

    def _mark_disconnected(self, connection: ConnectionModel, reason: str) -> bool:
        connection.status = DISCONNECTED
        connection.account_id = None
        connection.disconnected_at = self._clock()
        connection.disconnected_reason = reason
        connection.portal_enabled = False
        return True

    def _update(self, site_id: str, change: Callable[[ConnectionModel], bool],
                connection: Optional[ConnectionModel] = None) -> Tuple[Optional[ConnectionModel], bool]:
        """Apply `change` (False: nothing to do) to the site's connection and
        save it; the connection and whether it was saved. When another request
        wrote it since it was read (or an index returned an older copy), read
        it again and decide again."""
        for _ in range(UPDATE_ATTEMPTS):
            connection = connection or self._connections.get(site_id)
            if connection is None or not change(connection):
                return connection, False
            try:
                self._connections.save(connection)
                return connection, True
            except ConnectionChanged:
                connection = None
        raise ConnectionChanged("The connector kept changing meanwhile; reload it and try again")

    def account_deauthorized(self, account_id: str, livemode: bool, event_created: int) -> int:
        """Stripe says the platform lost access to the account: every site
        connected to it before the event was created is disconnected."""
        def revoke(current: ConnectionModel) -> bool:
            if (current.status != CONNECTED or current.account_id != account_id
                    or bool(current.livemode) != bool(livemode)):
                return False
            # An event about an earlier connection (one the admin ended, or
            # one replaced since) must not end the connection made after it.
            if event_created < int(current.connected_at.timestamp()):
                logger.info("Ignoring a deauthorization of %s older than site %s's connection",
                            account_id, current.site_id)
                return False
            return self._mark_disconnected(current, REVOKED)

        revoked = 0
        for indexed in self._connections.sites_connected_to(account_id):
            if self._update(indexed.site_id, revoke, indexed)[1]:
                revoked += 1
                logger.info("Site %s lost %s: revoked in Stripe", indexed.site_id, account_id)
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

        def rename(current: ConnectionModel) -> bool:
            if (current.status != CONNECTED or current.account_id != account_id
                    or current.display_name == profile.display_name):
                return False
            current.display_name = profile.display_name
            return True

        return sum(self._update(connection.site_id, rename, connection)[1] for connection in connections)
