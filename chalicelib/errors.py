"""Domain exceptions. They name what went wrong; only app.py turns them into
HTTP answers."""


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class ConfigurationError(ConnectorError):
    """The deployment is misconfigured; the connector must not serve."""


class Unauthorized(ConnectorError):
    """No token, or one that is not valid."""


class Forbidden(ConnectorError):
    """A valid token whose role may not do this."""


class InvalidRequest(ConnectorError):
    """The caller sent something we cannot accept."""

    code = "invalid_request"


class InvalidSettings(InvalidRequest):
    """Portal settings that are well formed but not acceptable (a URL that is
    not absolute https, or enabling without both policy URLs)."""

    code = "invalid_settings"


class InvalidReturnUrl(InvalidRequest):
    """A portal return URL that is not on an allowed origin."""

    code = "invalid_return_url"


class NotFound(ConnectorError):
    """What the request names does not exist for the caller's site."""


class AlreadyLinked(ConnectorError):
    """The subscription became another member's since the caller looked."""


class NotLinked(ConnectorError):
    """The subscription's member did not come from a link or a claim."""


class NotConnected(ConnectorError):
    """The site has no connected Stripe account."""


class ConnectionChanged(ConnectorError):
    """Someone else wrote the connection between our read and our write."""


class PortalDisabled(ConnectorError):
    """The site offers no billing portal: not connected, or not enabled."""


class NoBillingAccount(ConnectorError):
    """The member has no Stripe customer on the site's connected account."""


class StripeFailure(ConnectorError):
    """Stripe refused or failed a call, or could not be reached."""


class AccountNotConnected(StripeFailure):
    """Stripe says the platform is not (or no longer) connected to the account."""


class PortalConfigurationGone(StripeFailure):
    """Stripe no longer has the portal configuration we stored."""


class CustomerGone(StripeFailure):
    """Stripe no longer has the customer we named."""


class InvalidState(ConnectorError):
    """An OAuth state that is missing, unknown, already used or expired."""


class AccessDenied(ConnectorError):
    """The admin declined the connection at Stripe."""


class InvalidSignature(ConnectorError):
    """A webhook whose Stripe-Signature does not verify."""


class InvalidPayload(ConnectorError):
    """A correctly signed webhook whose body is not a Stripe event."""


class PayloadTooLarge(ConnectorError):
    """A request body over the size we accept."""


class RateLimited(ConnectorError):
    """Too many calls of one kind: `retry_after` says in how many whole
    seconds the next may go ahead."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
