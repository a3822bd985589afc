"""GET /members?email=…: the admin finds a member by a customer's email.

The connected account's customers with that email (Stripe's plain list, as
the portal's lookup), each with the member the site knows them as: named by
the customer's metadata, else recorded by the site (an earlier
subscription, a link or a claim), else none."""
from typing import Any, Dict, List

from chalicelib.connections import ConnectionStore
from chalicelib.errors import InvalidRequest, NotConnected
from chalicelib.identity import customer_ref
from chalicelib.models import CONNECTED, CustomerMemberModel, read_many
from chalicelib.stripe_gateway import StripeGateway

MAX_EMAIL_LENGTH = 512


class MemberSearch:
    def __init__(self, connections: ConnectionStore, stripe: StripeGateway, connection):
        self._connections = connections
        self._stripe = stripe
        self._connection = connection

    def by_email(self, site_id: str, email: Any) -> Dict[str, List[Dict[str, Any]]]:
        if not isinstance(email, str) or "@" not in email or len(email) > MAX_EMAIL_LENGTH \
                or email != email.strip():
            raise InvalidRequest("email must be an email address")
        connection = self._connections.get(site_id)
        if connection is None or connection.status != CONNECTED:
            raise NotConnected("Connect a Stripe account to find members by their customers' email")
        account_id = connection.account_id
        customers = self._stripe.customers_with_email(account_id, email)
        recorded = {record.customer_ref: record.user_id for record in read_many(self._connection, {
            CustomerMemberModel: [(site_id, customer_ref(account_id, c.customer_id)) for c in customers]
        })[CustomerMemberModel]} if customers else {}
        found = []
        for customer in customers:
            record = recorded.get(customer_ref(account_id, customer.customer_id))
            user_id = customer.user_id or record
            found.append({"customer_id": customer.customer_id, "email": email, "user_id": user_id,
                          "member_from": "metadata" if customer.user_id else ("record" if record else None)})
        return {"members": found}
