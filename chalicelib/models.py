"""PynamoDB models. Table names, region and endpoint come from settings
through `bind`, called by the factories before first use."""
from typing import Any, Dict, Iterable, List, Tuple, Type

from pynamodb.attributes import (BooleanAttribute, ListAttribute, MapAttribute, NumberAttribute,
                                 TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute,
                                 VersionAttribute)
from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.access import DEFAULT_PAST_DUE_GRACE
from chalicelib.settings import Settings

# What DynamoDB answers when a write's condition does not hold.
LOST_RACE = "ConditionalCheckFailedException"


class AccountIndex(GlobalSecondaryIndex):
    """Sites by the Stripe account they are connected to. Sparse: a site is in
    it only while `account_id` is set, which is only while it is connected."""

    class Meta:
        index_name = "account-index"
        projection = AllProjection()

    account_id = UnicodeAttribute(hash_key=True)
    site_id = UnicodeAttribute(range_key=True)


CONNECTED = "connected"
DISCONNECTED = "disconnected"
# How long a member keeps access while Stripe retries a failed payment, until
# the site's admin chooses otherwise.
DEFAULT_PAST_DUE_GRACE_DAYS = DEFAULT_PAST_DUE_GRACE.days


class ConnectionModel(Model):
    """A site's Stripe connector: the connected account and the admin's settings."""

    class Meta:
        table_name = "stripe-connector-connections"
        billing_mode = "PAY_PER_REQUEST"

    site_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute(default=DISCONNECTED)
    account_id = UnicodeAttribute(null=True)
    last_account_id = UnicodeAttribute(null=True)
    display_name = UnicodeAttribute(null=True)
    livemode = BooleanAttribute(null=True)
    connected_at = UTCDateTimeAttribute(null=True)
    connected_by = UnicodeAttribute(null=True)
    disconnected_at = UTCDateTimeAttribute(null=True)
    disconnected_reason = UnicodeAttribute(null=True)
    portal_enabled = BooleanAttribute(default=False)
    privacy_policy_url = UnicodeAttribute(null=True)
    terms_of_service_url = UnicodeAttribute(null=True)
    allow_cancel = BooleanAttribute(default=False)
    portal_configuration_id = UnicodeAttribute(null=True)
    # How long a past-due subscription keeps access (PUT /connectors/stripe/settings);
    # an item stored before the setting existed reads the default too.
    past_due_grace_days = NumberAttribute(default=DEFAULT_PAST_DUE_GRACE_DAYS)
    version = VersionAttribute()

    account_index = AccountIndex()


class OAuthStateModel(Model):
    """A one-time OAuth `state`, stored by its hash so a leaked table does not
    hand out usable states."""

    class Meta:
        table_name = "stripe-connector-oauth-states"
        billing_mode = "PAY_PER_REQUEST"

    state_hash = UnicodeAttribute(hash_key=True)
    site_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    # DynamoDB deletes expired items only eventually; readers check it too.
    expires_at = TTLAttribute()


class EventsByAccountIndex(GlobalSecondaryIndex):
    """Handled events by account, latest last: when the account's events
    last reached the connector (the card's `events.last_received_at`)."""

    class Meta:
        index_name = "account-index"
        projection = KeysOnlyProjection()

    account_id = UnicodeAttribute(hash_key=True)
    handled_at = UTCDateTimeAttribute(range_key=True)


class MissedEventsIndex(GlobalSecondaryIndex):
    """Events only the catch-up found, by account and when: the card's
    `events.missed_last_day`. Sparse: `missed_account` is set only on them."""

    class Meta:
        index_name = "missed-index"
        projection = KeysOnlyProjection()

    missed_account = UnicodeAttribute(hash_key=True)
    handled_at = UTCDateTimeAttribute(range_key=True)


class WebhookEventModel(Model):
    """A Stripe event that was handled, remembered to drop its duplicates."""

    class Meta:
        table_name = "stripe-connector-webhook-events"
        billing_mode = "PAY_PER_REQUEST"

    event_id = UnicodeAttribute(hash_key=True)
    event_type = UnicodeAttribute()
    account_id = UnicodeAttribute(null=True)
    created = NumberAttribute()
    handled_at = UTCDateTimeAttribute()
    # The account, when the catch-up handled the event: Stripe had not delivered it.
    missed_account = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()

    account_index = EventsByAccountIndex()
    missed_index = MissedEventsIndex()


class MemberCustomerModel(Model):
    """The Stripe customer that is a member of a site, on the account it was
    found on: recorded from the member's subscriptions, or found by email for
    the billing portal."""

    class Meta:
        table_name = "stripe-connector-member-customers"
        billing_mode = "PAY_PER_REQUEST"

    site_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    source = UnicodeAttribute()
    recorded_at = UTCDateTimeAttribute()


class ProductAttribute(MapAttribute):
    product_id = UnicodeAttribute()
    stripe_product_id = UnicodeAttribute()
    # The Stripe product's name, as the member sees it in the portal.
    name = UnicodeAttribute(null=True)


class DueIndex(GlobalSecondaryIndex):
    """Entitlements that still grant access, by when that access ends.
    Sparse: `due_shard` and `due_at` are set only while access is granted, so
    the sweep reads what is due, not what is stored; the shard spreads them
    over several partitions."""

    class Meta:
        index_name = "due-index"
        projection = AllProjection()

    due_shard = NumberAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class GrantsIndex(GlobalSecondaryIndex):
    """Entitlements that grant access, by site and account, oldest view first:
    what an import re-reads when its listing did not show them. Sparse, as
    the due index: `grant_key` is set only while access is granted."""

    class Meta:
        index_name = "grants-index"
        projection = AllProjection()

    grant_key = UnicodeAttribute(hash_key=True)
    view_time = NumberAttribute(range_key=True)


class ClaimIndex(GlobalSecondaryIndex):
    """Unmatched subscriptions by site and their customer's email (lower
    case): what a member with that verified email may claim. Sparse:
    `claim_key` is set only while the subscription is unmatched, unclaimed
    and would grant access."""

    class Meta:
        index_name = "claim-index"
        projection = AllProjection()

    claim_key = UnicodeAttribute(hash_key=True)
    subscription_id = UnicodeAttribute(range_key=True)


class UnmatchedIndex(GlobalSecondaryIndex):
    """Unmatched subscriptions a site's admin is shown, by site and account:
    the list reads what it lists, not the history of the site's unmatched
    partition. Sparse: `listed_key` is set only while the subscription is
    unmatched, unclaimed and would grant access."""

    class Meta:
        index_name = "unmatched-index"
        projection = AllProjection()

    listed_key = UnicodeAttribute(hash_key=True)
    subscription_id = UnicodeAttribute(range_key=True)


class EntitlementModel(Model):
    """What one subscription grants a member of a site: every product on it
    shares the subscription's state and access_until. A subscription that
    names no member is kept the same way under the site's unmatched key, with
    no `user_id`: what it would grant, to no one, never announced. `view_time` is when the
    Stripe view it was computed from was read (microseconds); an older view
    never overwrites a newer one. The table's stream (old and new images) is
    the outbox the access announcements are made from."""

    class Meta:
        table_name = "stripe-connector-entitlements"
        billing_mode = "PAY_PER_REQUEST"
        stream_view_type = "NEW_AND_OLD_IMAGES"

    member_key = UnicodeAttribute(hash_key=True)
    subscription_id = UnicodeAttribute(range_key=True)
    site_id = UnicodeAttribute()
    # None while the subscription is unmatched.
    user_id = UnicodeAttribute(null=True)
    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    # The customer's, shown to the admin for an unmatched subscription.
    email = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    claim_key = UnicodeAttribute(null=True)
    # The member an unmatched subscription went to (a claim or a link).
    claimed_by = UnicodeAttribute(null=True)
    # Why the subscription is this member's (chalicelib/identity.py); None
    # while it is unmatched.
    member_from = UnicodeAttribute(null=True)
    # The member whose link or claim of this unmatched subscription was
    # undone: they may not claim it again.
    unlinked_from = UnicodeAttribute(null=True)
    listed_key = UnicodeAttribute(null=True)
    stripe_status = UnicodeAttribute()
    state = UnicodeAttribute()
    grants = BooleanAttribute()
    access_until = UTCDateTimeAttribute(null=True)
    reason = UnicodeAttribute()
    products = ListAttribute(of=ProductAttribute, default=list)
    view_time = NumberAttribute()
    stripe_event_id = UnicodeAttribute(null=True)
    changed_at = UTCDateTimeAttribute()
    due_shard = NumberAttribute(null=True)
    due_at = NumberAttribute(null=True)
    grant_key = UnicodeAttribute(null=True)

    due_index = DueIndex()
    grants_index = GrantsIndex()
    claim_index = ClaimIndex()
    unmatched_index = UnmatchedIndex()


class SubscriptionMemberModel(Model):
    """Whose a subscription is on a site now: the member (None while it is
    unmatched) and why, as of the newest view written. Every view of the
    subscription is written with it, on the condition that it is still as
    read, so a subscription changing hands ends the earlier member's access
    in the same write, and two writers never both think they hold it."""

    class Meta:
        table_name = "stripe-connector-subscription-members"
        billing_mode = "PAY_PER_REQUEST"

    site_id = UnicodeAttribute(hash_key=True)
    subscription_id = UnicodeAttribute(range_key=True)
    account_id = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    member_from = UnicodeAttribute(null=True)
    # A member whose link or claim was undone: no record makes it theirs again.
    unlinked_from = UnicodeAttribute(null=True)
    view_time = NumberAttribute()
    # When the subscription was last read from Stripe (microseconds): an
    # event created before it needs no read of its own. A link, a claim or an
    # unlink moves view_time, not this.
    read_at = NumberAttribute(null=True)
    changed_at = UTCDateTimeAttribute()
    # What the entitlement it points at holds now (its state, access,
    # access_until and products), written with it: the `from` of the next
    # change's access history, known without reading the entitlement.
    state = UnicodeAttribute(null=True)
    grants = BooleanAttribute(null=True)
    access_until = UTCDateTimeAttribute(null=True)
    products = ListAttribute(of=ProductAttribute, null=True)


class CustomerMemberModel(Model):
    """The member a site has recorded for a Stripe customer: from a
    subscription whose metadata named them, a link by the admin, or a claim
    by verified email. A subscription that names nobody is this member's."""

    class Meta:
        table_name = "stripe-connector-customer-members"
        billing_mode = "PAY_PER_REQUEST"

    site_id = UnicodeAttribute(hash_key=True)
    # account_id#customer_id: the same customer id on another account is another customer.
    customer_ref = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    source = UnicodeAttribute()
    recorded_at = UTCDateTimeAttribute()


class ImportModel(Model):
    """A site's latest import of its connected account's subscriptions: where
    it is (the phase, the page it waits for, Stripe's cursor) and its counts.
    A new import replaces it, and messages of the one replaced are dropped."""

    class Meta:
        table_name = "stripe-connector-imports"
        billing_mode = "PAY_PER_REQUEST"

    site_id = UnicodeAttribute(hash_key=True)
    import_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    livemode = BooleanAttribute(default=False)
    state = UnicodeAttribute()
    started_at = UTCDateTimeAttribute()
    # Views read before this moment (microseconds) were not made by this import.
    started_view_time = NumberAttribute()
    finished_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute()
    phase = UnicodeAttribute()
    page = NumberAttribute(default=0)
    cursor = UnicodeAttribute(null=True)
    subscriptions = NumberAttribute(default=0)
    matched = NumberAttribute(default=0)
    unmatched = NumberAttribute(default=0)
    reread = NumberAttribute(default=0)
    # Stripe product id → CustomerHub product id: products are read once per import.
    products = MapAttribute(default=dict)
    # Stripe product id → its name, as the members' history shows it.
    product_names = MapAttribute(default=dict)
    failure = UnicodeAttribute(null=True)


class CatchUpModel(Model):
    """Up to when a connected account's undelivered events were caught up."""

    class Meta:
        table_name = "stripe-connector-catch-ups"
        billing_mode = "PAY_PER_REQUEST"

    account_id = UnicodeAttribute(hash_key=True)
    caught_up_to = NumberAttribute()
    updated_at = UTCDateTimeAttribute()
    # When the catch-up last ran for the account, whatever it found.
    ran_at = UTCDateTimeAttribute(null=True)


class WebhookEndpointModel(Model):
    """The platform's Connect webhook endpoint as Stripe last described it
    (STRIPE_WEBHOOK_ENDPOINT_ID): `enabled` or `disabled`, and when."""

    class Meta:
        table_name = "stripe-connector-webhook-endpoints"
        billing_mode = "PAY_PER_REQUEST"

    endpoint_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute()
    checked_at = UTCDateTimeAttribute()
    # Since when it has had that status, as far as the checks saw.
    since = UTCDateTimeAttribute()


class AccessHistoryModel(Model):
    """One change of a member's access to one product of one subscription,
    written in the same transaction as the change (chalicelib/history.py):
    what it was, what it became, why, and what caused it. Newest first by
    `change_key` (microseconds, subscription, product); kept 400 days."""

    class Meta:
        table_name = "stripe-connector-access-history"
        billing_mode = "PAY_PER_REQUEST"

    member_key = UnicodeAttribute(hash_key=True)
    change_key = UnicodeAttribute(range_key=True)
    site_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    subscription_id = UnicodeAttribute()
    product_id = UnicodeAttribute()
    product_name = UnicodeAttribute(null=True)
    from_state = UnicodeAttribute(null=True)
    from_access = BooleanAttribute(null=True)
    from_access_until = UTCDateTimeAttribute(null=True)
    to_state = UnicodeAttribute()
    to_access = BooleanAttribute()
    to_access_until = UTCDateTimeAttribute(null=True)
    reason = UnicodeAttribute()
    cause_kind = UnicodeAttribute()
    cause_id = UnicodeAttribute()
    expires_at = TTLAttribute()


class OpenInvoiceModel(Model):
    """When a subscription's oldest open invoice was made, as an import found
    it listing the account's open invoices (before its past_due page): one
    listing instead of a request per past_due subscription. Kept only for
    the import's sake."""

    class Meta:
        table_name = "stripe-connector-open-invoices"
        billing_mode = "PAY_PER_REQUEST"

    import_id = UnicodeAttribute(hash_key=True)
    subscription_id = UnicodeAttribute(range_key=True)
    created = NumberAttribute()
    expires_at = TTLAttribute()


class RateLimitModel(Model):
    """A rate limit's counter (chalicelib/limits.py writes it): when an
    action limited to once a period last started, or how many calls one
    window of a limit took. Kept only until its period or window is over."""

    class Meta:
        table_name = "stripe-connector-rate-limits"
        billing_mode = "PAY_PER_REQUEST"

    limit_key = UnicodeAttribute(hash_key=True)
    started_at = NumberAttribute(null=True)
    calls = NumberAttribute(null=True)
    # DynamoDB deletes expired items only eventually; the limits' conditions
    # read the time, not whether the item is there.
    expires_at = TTLAttribute()


MODELS = (ConnectionModel, OAuthStateModel, WebhookEventModel, MemberCustomerModel, EntitlementModel,
          ImportModel, CatchUpModel, OpenInvoiceModel, CustomerMemberModel, SubscriptionMemberModel,
          RateLimitModel, WebhookEndpointModel, AccessHistoryModel)


def bind(settings: Settings) -> None:
    """Point every model at the configured tables and endpoint."""
    tables = {
        ConnectionModel: settings.connections_table,
        OAuthStateModel: settings.oauth_states_table,
        WebhookEventModel: settings.webhook_events_table,
        MemberCustomerModel: settings.member_customers_table,
        EntitlementModel: settings.entitlements_table,
        ImportModel: settings.imports_table,
        CatchUpModel: settings.catch_ups_table,
        OpenInvoiceModel: settings.open_invoices_table,
        CustomerMemberModel: settings.customer_members_table,
        SubscriptionMemberModel: settings.subscription_members_table,
        RateLimitModel: settings.rate_limits_table,
        WebhookEndpointModel: settings.webhook_endpoints_table,
        AccessHistoryModel: settings.access_history_table,
    }
    for model, table_name in tables.items():
        place = (table_name, settings.aws_region, settings.aws_endpoint_url)
        if place == (model.Meta.table_name, getattr(model.Meta, "region", None),
                     getattr(model.Meta, "host", None)) and model._connection is not None:
            continue
        model.Meta.table_name, model.Meta.region, model.Meta.host = place
        # A connection made before binding would keep the old table and host.
        model._connection = None


def create_tables() -> None:
    """Create every table that does not exist yet (local stack and tests)."""
    for model in MODELS:
        if not model.exists():
            model.create_table(wait=True)
            model.update_ttl(ignore_update_ttl_errors=True)


def save_if(item: Model, condition) -> bool:
    """Save item if condition holds; False when it did not (another write
    came first). Any other failure is raised."""
    try:
        item.save(condition=condition)
    except PutError as exc:
        if exc.cause_response_code != LOST_RACE:
            raise
        return False
    return True


def update_if(item: Model, actions, condition) -> bool:
    """Update item if condition holds (item then holds what was stored);
    False when it did not."""
    try:
        item.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code != LOST_RACE:
            raise
        return False
    return True


def delete_if(item: Model, condition) -> bool:
    """Delete item if condition holds; False when it did not."""
    try:
        item.delete(condition=condition)
    except DeleteError as exc:
        if exc.cause_response_code != LOST_RACE:
            raise
        return False
    return True


# DynamoDB's limit on the keys of one BatchGetItem.
KEYS_PER_BATCH_GET = 100


def read_many(connection, wanted: Dict[Type[Model], Iterable[Tuple]]) -> Dict[Type[Model], List[Model]]:
    """Items of several tables by key, consistently read, in one BatchGetItem
    per hundred keys (PynamoDB's batch_get reads one table a request). Keys
    DynamoDB leaves unprocessed are asked for again."""
    requests: List[Tuple[Type[Model], Tuple]] = []
    for model, keys in wanted.items():
        requests.extend((model, key) for key in dict.fromkeys(keys))
    by_table = {model.Meta.table_name: model for model, _ in requests}
    found: Dict[Type[Model], List[Model]] = {model: [] for model in wanted}
    for start in range(0, len(requests), KEYS_PER_BATCH_GET):
        pending: Dict[str, Any] = {}
        for model, key in requests[start:start + KEYS_PER_BATCH_GET]:
            table = pending.setdefault(model.Meta.table_name, {"Keys": [], "ConsistentRead": True})
            table["Keys"].append(_key_of(model, key))
        while pending:
            answer = connection.dispatch("BatchGetItem", {"RequestItems": pending})
            for table_name, items in answer.get("Responses", {}).items():
                model = by_table[table_name]
                found[model].extend(model.from_raw_data(item) for item in items)
            pending = answer.get("UnprocessedKeys") or {}
    return found


def _key_of(model: Type[Model], key: Tuple) -> Dict[str, Any]:
    names = [model._hash_keyname] + ([model._range_keyname] if model._range_keyname else [])
    attributes = model.get_attributes()
    return {name: {attributes[name].attr_type: attributes[name].serialize(value)}
            for name, value in zip(names, key)}
