"""Products and their prices: /v1/products, and the one recurring price per
product a subscription's items use."""
import copy
from typing import Any, Dict, List, Optional

from local.stripe_sandbox.wire import (Request, Response, SandboxError, _form_bool, _form_metadata, _merge_metadata,
                                       _missing, _random_id, json_response)

DEFAULT_UNIT_AMOUNT = 1500


class Products:
    """Products and prices, on an account or on the platform."""

    def create_product(self, account_id: Optional[str], name: Optional[str] = None,
                       metadata: Optional[Dict[str, str]] = None, id: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            scope = self._scope(account_id)
            product_id = id or _random_id("prod_", 14)
            if any(product_id in products for products in self._products.values()):
                raise ValueError("product %s already exists" % product_id)
            now = int(self.now())
            product = {
                "id": product_id,
                "object": "product",
                "active": True,
                "created": now,
                "default_price": None,
                "description": None,
                "images": [],
                "livemode": self._livemode(scope),
                "marketing_features": [],
                "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
                "name": name or "Sandbox product",
                "package_dimensions": None,
                "shippable": None,
                "statement_descriptor": None,
                "tax_code": None,
                "type": "service",
                "unit_label": None,
                "updated": now,
                "url": None,
            }
            self._products.setdefault(scope, {})[product_id] = product
            return copy.deepcopy(product)

    def update_product(self, account_id: Optional[str], product_id: str, **fields: Any) -> Dict[str, Any]:
        """Changes name, active, description or metadata (merged: a value "" deletes the key)."""
        with self._lock:
            product = self._product_or_raise(self._scope(account_id), product_id)
            changed = copy.deepcopy(product)
            for name, value in fields.items():
                if name == "metadata":
                    changed["metadata"] = _merge_metadata(changed["metadata"], value or {})
                elif name in ("name", "active", "description"):
                    changed[name] = value
                else:
                    raise ValueError("a product's %s cannot be changed here" % name)
            changed["updated"] = int(self.now())
            product.clear()
            product.update(changed)
            return copy.deepcopy(product)

    def products(self, account_id: Optional[str]) -> List[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._products.get(self._scope(account_id), {}).values()))

    def _product_or_raise(self, scope: Optional[str], product_id: str) -> Dict[str, Any]:
        try:
            return self._products.get(scope, {})[product_id]
        except KeyError:
            raise KeyError("no product %s on %s" % (product_id, scope or "the platform")) from None

    def _price_for(self, scope: Optional[str], product_id: str) -> Dict[str, Any]:
        prices = self._prices.setdefault(scope, {})
        if product_id not in prices:
            prices[product_id] = {
                "id": _random_id("price_", 14),
                "object": "price",
                "active": True,
                "billing_scheme": "per_unit",
                "created": int(self.now()),
                "currency": "usd",
                "custom_unit_amount": None,
                "livemode": self._livemode(scope),
                "lookup_key": None,
                "metadata": {},
                "nickname": None,
                "product": product_id,
                "recurring": {"interval": "month", "interval_count": 1, "meter": None, "trial_period_days": None,
                              "usage_type": "licensed"},
                "tax_behavior": "unspecified",
                "tiers_mode": None,
                "transform_quantity": None,
                "type": "recurring",
                "unit_amount": DEFAULT_UNIT_AMOUNT,
                "unit_amount_decimal": str(DEFAULT_UNIT_AMOUNT),
            }
        return prices[product_id]

    def _plan_for(self, scope: Optional[str], product_id: str) -> Dict[str, Any]:
        """The price as the legacy plan a subscription item still carries
        beside it: same id, amount and interval."""
        price = self._price_for(scope, product_id)
        recurring = price["recurring"]
        return {
            "id": price["id"],
            "object": "plan",
            "active": price["active"],
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": price["billing_scheme"],
            "created": price["created"],
            "currency": price["currency"],
            "interval": recurring["interval"],
            "interval_count": recurring["interval_count"],
            "livemode": price["livemode"],
            "metadata": dict(price["metadata"]),
            "meter": recurring["meter"],
            "nickname": price["nickname"],
            "product": product_id,
            "tiers_mode": None,
            "transform_usage": None,
            "trial_period_days": recurring["trial_period_days"],
            "usage_type": recurring["usage_type"],
        }

    # API

    def _api_create_product(self, request: Request) -> Response:
        params = request.params
        name = params["name"]
        metadata = _form_metadata(params.get("metadata"), {})
        product_id = params.get("id") or None
        if product_id and any(product_id in products for products in self._products.values()):
            raise SandboxError(400, "Product already exists.", code="resource_already_exists", param="id")
        product = self.create_product(request.stripe_account, name=name, metadata=metadata, id=product_id)
        fields: Dict[str, Any] = {}
        if isinstance(params.get("description"), str):
            fields["description"] = params["description"] or None
        if "active" in params:
            fields["active"] = _form_bool(params["active"], "active")
        if fields:
            product = self.update_product(request.stripe_account, product["id"], **fields)
        return json_response(product)

    def _api_retrieve_product(self, request: Request, product_id: str) -> Response:
        product = self._products.get(request.stripe_account, {}).get(product_id)
        if product is None:
            raise _missing("product", product_id)
        return json_response(product)
