"""The answer checker (tests/sandbox/conformance.py) finds each kind of
drift between a JSON answer and the stripe-python class that reads it."""
import copy

import stripe
from stripe._list_object import ListObject

from tests.sandbox.conformance import event_violations, fields_of, violations

PRODUCT = {
    "id": "prod_1", "object": "product", "active": True, "created": 1_900_000_000, "default_price": None,
    "description": None, "images": [], "livemode": False, "marketing_features": [], "metadata": {"a": "1"},
    "name": "Yoga", "type": "service", "updated": 1_900_000_000,
}
ITEM = {
    "id": "si_1", "object": "subscription_item", "created": 1, "current_period_end": 2, "current_period_start": 1,
    "discounts": [], "metadata": {}, "subscription": "sub_1",
    "plan": {"id": "price_1", "object": "plan", "active": True, "billing_scheme": "per_unit", "created": 1,
             "currency": "usd", "interval": "month", "interval_count": 1, "livemode": False,
             "usage_type": "licensed", "amount_decimal": "1500"},
    "price": {"id": "price_1", "object": "price", "active": True, "billing_scheme": "per_unit", "created": 1,
              "currency": "usd", "livemode": False, "metadata": {}, "product": "prod_1", "type": "recurring",
              "unit_amount_decimal": "1500"},
}
SUBSCRIPTION = {
    "id": "sub_1", "object": "subscription", "automatic_tax": {"enabled": False}, "billing_cycle_anchor": 1,
    "billing_mode": {"type": "flexible"}, "billing_schedules": [], "cancel_at_period_end": False,
    "collection_method": "charge_automatically", "created": 1, "currency": "usd", "customer": "cus_1",
    "discounts": [], "invoice_settings": {"issuer": {"type": "self"}}, "livemode": False, "metadata": {},
    "start_date": 1, "status": "active",
    "items": {"object": "list", "data": [ITEM], "has_more": False, "url": "/v1/subscription_items?subscription=sub_1"},
}


def changed(answer, path, value=None, remove=False):
    answer = copy.deepcopy(answer)
    *parents, last = path
    node = answer
    for key in parents:
        node = node[key]
    if remove:
        del node[last]
    else:
        node[last] = value
    return answer


def test_an_answer_with_every_required_field_typed_conforms():
    assert violations(PRODUCT, stripe.Product) == []
    assert violations(SUBSCRIPTION, stripe.Subscription) == []


def test_a_missing_required_field_is_named_with_its_path():
    assert violations(changed(PRODUCT, ["images"], remove=True), stripe.Product) == [
        "Product.images: missing (List[str])"]
    found = violations(changed(SUBSCRIPTION, ["items", "data", 0, "plan", "interval"], remove=True),
                       stripe.Subscription)
    assert found == ["Subscription.items.data[0].plan.interval: missing (Union[Literal['day', 'month', 'week', "
                     "'year'], str])"]


def test_optional_fields_may_be_absent_or_null_but_not_of_another_type():
    assert violations(changed(PRODUCT, ["description"], remove=True), stripe.Product) == []
    assert violations(changed(PRODUCT, ["description"], None), stripe.Product) == []
    assert violations(changed(PRODUCT, ["description"], 3), stripe.Product) == [
        "Product.description: expected Optional[str], got 3"]


def test_a_wrong_scalar_type_is_reported_and_a_boolean_is_no_integer():
    assert violations(changed(PRODUCT, ["created"], "yesterday"), stripe.Product) == [
        "Product.created: expected int, got 'yesterday'"]
    assert violations(changed(PRODUCT, ["created"], True), stripe.Product) == [
        "Product.created: expected int, got True"]
    assert violations(changed(PRODUCT, ["active"], None), stripe.Product) == [
        "Product.active: null, but bool is not optional"]


def test_a_value_outside_its_literals_is_reported_even_where_the_library_also_takes_any_string():
    assert violations(changed(PRODUCT, ["type"], "digital"), stripe.Product) == [
        "Product.type: 'digital' is not one of 'good', 'service'"]
    assert violations(changed(PRODUCT, ["object"], "price"), stripe.Product) == [
        "Product.object: 'price' is not one of 'product'"]


def test_a_field_the_class_does_not_declare_is_drift():
    assert violations(changed(PRODUCT, ["attributes"], []), stripe.Product) == [
        "Product.attributes: not a field of Product"]
    found = violations(changed(SUBSCRIPTION, ["items", "data", 0, "price", "recurring"], {
        "interval": "month", "interval_count": 1, "usage_type": "licensed", "aggregate_usage": None}),
        stripe.Subscription)
    assert found == ["Subscription.items.data[0].price.recurring.aggregate_usage: not a field of Price.Recurring"]


def test_nested_objects_and_list_objects_are_walked():
    assert violations(changed(SUBSCRIPTION, ["automatic_tax", "enabled"], "no"), stripe.Subscription) == [
        "Subscription.automatic_tax.enabled: expected bool, got 'no'"]
    assert violations(changed(SUBSCRIPTION, ["items", "total_count"], 1), stripe.Subscription) == [
        "Subscription.items.total_count: not a field of a list object"]
    assert violations(changed(SUBSCRIPTION, ["discounts"], None), stripe.Subscription) == [
        "Subscription.discounts: null, but List[Union[str, Discount]] is not optional"]


def test_an_expandable_field_is_an_id_or_the_object_its_class_declares():
    assert violations(changed(SUBSCRIPTION, ["customer"], {"id": "cus_1", "object": "customer", "created": 1,
                                                           "livemode": False}), stripe.Subscription) == []
    assert violations(changed(SUBSCRIPTION, ["customer"], {"id": "cus_1", "object": "customer"}),
                      stripe.Subscription) == ["Subscription.customer.created: missing (int)",
                                               "Subscription.customer.livemode: missing (bool)"]
    assert violations(changed(SUBSCRIPTION, ["customer"], 7), stripe.Subscription) == [
        "Subscription.customer: expected Union[str, Customer], got 7"]
    expanded = changed(SUBSCRIPTION, ["items", "data", 0, "price", "product"], dict(PRODUCT, images=None))
    assert violations(expanded, stripe.Subscription) == [
        "Subscription.items.data[0].price.product.images: null, but List[str] is not optional"]


def test_a_deleted_object_needs_only_its_id_object_and_deleted():
    stub = {"id": "cus_1", "object": "customer", "deleted": True}
    assert violations(changed(SUBSCRIPTION, ["customer"], stub), stripe.Subscription) == []
    assert violations(dict(stub, deleted=1), stripe.Customer) != []


def test_decimals_travel_as_strings_and_metadata_values_as_strings():
    assert violations(changed(ITEM, ["price", "unit_amount_decimal"], 1500), stripe.SubscriptionItem) == [
        "SubscriptionItem.price.unit_amount_decimal: expected Optional[Decimal], got 1500"]
    assert violations(changed(PRODUCT, ["metadata", "a"], 1), stripe.Product) == [
        "Product.metadata.a: expected str, got 1"]


def test_a_list_answer_is_checked_item_by_item():
    listed = {"object": "list", "data": [PRODUCT, changed(PRODUCT, ["name"], None)], "has_more": False,
              "url": "/v1/products"}
    assert violations(listed, ListObject[stripe.Product]) == [
        "ListObject[Product].data[1].name: null, but str is not optional"]


def test_an_events_object_is_checked_against_the_class_its_object_names():
    event = {"id": "evt_1", "object": "event", "created": 1, "livemode": False, "pending_webhooks": 1,
             "type": "customer.subscription.created", "data": {"object": SUBSCRIPTION}}
    assert event_violations(event) == []
    broken = changed(event, ["data", "object", "billing_mode"], remove=True)
    assert event_violations(broken) == ["Event.data.object.billing_mode: missing (Subscription.BillingMode)"]
    assert event_violations(changed(event, ["data", "previous_attributes"], {"status": "trialing"})) == [
        "Event.data.previous_attributes: sent on customer.subscription.created, which is not an update"]


def test_fields_of_leave_out_private_names_and_class_variables():
    fields = fields_of(stripe.Subscription)
    assert "items" in fields and "automatic_tax" in fields
    assert not [name for name in fields if name.startswith("_")] and "OBJECT_NAME" not in fields
