"""Customers: /v1/customers and the helpers that create and delete them."""
import copy
from typing import Any, Dict, List, Optional

from local.stripe_sandbox.wire import Request, Response, _created_matches, _missing, _page, _random_id, json_response


class Customers:
    """Customers, on an account or on the platform."""

    def create_customer(self, account_id: Optional[str], email: Optional[str] = None,
                        metadata: Optional[Dict[str, str]] = None, name: Optional[str] = None,
                        id: Optional[str] = None) -> Dict[str, Any]:
        """A customer on account_id (None: on the platform itself)."""
        with self._lock:
            if account_id is not None:
                self._account_or_raise(account_id)
            customer = {
                "id": id or _random_id("cus_", 14),
                "object": "customer",
                "created": int(self.now()),
                "email": email,
                "livemode": False,
                "metadata": dict(metadata or {}),
                "name": name,
            }
            self._customers.setdefault(account_id, {})[customer["id"]] = customer
            return copy.deepcopy(customer)

    def delete_customer(self, account_id: Optional[str], customer_id: str) -> Dict[str, Any]:
        """Deletes the customer: retrieving or expanding it gives Stripe's stub
        ``{"id", "object": "customer", "deleted": true}``. Its subscriptions stay as they are."""
        with self._lock:
            scope = self._scope(account_id)
            self._customer_or_raise(scope, customer_id)
            stub = {"id": customer_id, "object": "customer", "deleted": True}
            self._customers[scope][customer_id] = stub
            return dict(stub)

    def customers(self, account_id: Optional[str]) -> List[Dict[str, Any]]:
        """The account's customers, oldest first, deleted ones as their stubs."""
        with self._lock:
            return copy.deepcopy(list(self._customers.get(self._scope(account_id), {}).values()))

    def _customer_or_raise(self, scope: Optional[str], customer_id: str) -> Dict[str, Any]:
        try:
            return self._customers.get(scope, {})[customer_id]
        except KeyError:
            raise KeyError("no customer %s on %s" % (customer_id, scope or "the platform")) from None

    # API

    def _api_list_customers(self, request: Request) -> Response:
        params = request.query
        customers = [c for c in reversed(list(self._customers.get(request.stripe_account, {}).values()))
                     if not c.get("deleted")]
        if "email" in params:
            customers = [c for c in customers if c["email"] == params["email"]]
        customers = [c for c in customers if _created_matches(c["created"], params.get("created"))]
        return json_response(_page(copy.deepcopy(customers), params, "/v1/customers", "customer"))

    def _api_create_customer(self, request: Request) -> Response:
        params = request.params
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else {}
        customer = self.create_customer(request.stripe_account, email=params.get("email") or None,
                                        metadata=metadata, name=params.get("name") or None)
        return json_response(customer)

    def _api_retrieve_customer(self, request: Request, customer_id: str) -> Response:
        customer = self._customers.get(request.stripe_account, {}).get(customer_id)
        if customer is None:
            raise _missing("customer", customer_id)
        return json_response(customer)
