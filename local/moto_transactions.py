"""DynamoDB transactions in the embedded AWS: a failed one leaves no trace
on a table's stream, none costs more as the tables grow, and none sees
another half done.

moto (5.2) rolls a failed TransactWriteItems back by putting in place a deep
copy of every table the transaction names, taken before it started: every
item, and the table's stream with every record it ever held. Three things
followed for the local stack and the benchmarks:

- The stream went with the copy. A reader holding a shard iterator taken
  before the failure (the stream pump takes one, then reads with it in the
  next request) still read the old stream, records of the failed
  transaction included, and its sequence numbers were then given again to
  the next writes, which the reader skipped as already read: an
  announcement of a change that never happened, and one lost.
- The copying grew with the tables: a webhook's transaction copied the
  entitlements and their stream, the members' customers and the event
  records whole, over 100 ms per webhook after 2,000 of them, and seconds
  with a million entitlements stored.
- Putting a copy in place replaced the table object itself: a write another
  thread made to the table meanwhile was lost with the old object.

Here nothing is copied but the items the transaction names: before it
starts, each is noted as it is (the object a Put or a Delete replaces or
removes whole; a deep copy where an Update changes the object in place), and
a failed transaction puts exactly those back in the same table object and
takes its records off the same stream readers hold. Transactions and the
single-item writes run one at a time in the process, as DynamoDB serializes
those that touch the same items: no other write's records land on a stream
between a transaction's start and its undoing. Every other copy of a table
is moto's own, in full.
"""
import copy
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Dict, Iterator, List, Optional, Tuple

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

# Set while a transaction runs: moto's "copy" of a table is then the table.
_TRANSACTING: ContextVar[bool] = ContextVar("transacting", default=False)
_ONE_AT_A_TIME = threading.RLock()
_original_transact = DynamoDBBackend.transact_write_items
# The single-item writes, made to wait for a transaction in another thread.
_WRITES = ("put_item", "update_item", "delete_item")
_originals = {name: getattr(DynamoDBBackend, name) for name in _WRITES}

# A named item as it was: its table, its keys, the item (None: absent).
Noted = Tuple[Table, DynamoType, Optional[DynamoType], Optional[Item]]


def install() -> None:
    """Make transactions cheap for every DynamoDB backend in this process."""
    DynamoDBBackend.transact_write_items = _transact_write_items
    for name in _WRITES:
        setattr(DynamoDBBackend, name, _one_at_a_time(_originals[name]))
    Table.__deepcopy__ = _copy_table


def _one_at_a_time(write):
    def serialized(backend: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with _ONE_AT_A_TIME:
            return write(backend, *args, **kwargs)
    serialized.__wrapped__ = write
    return serialized


@contextmanager
def installed() -> Iterator[None]:
    """The mend inside the block only: a benchmark that writes thousands of
    items in-process, beside others measured with moto as it is."""
    transact, deepcopy = DynamoDBBackend.__dict__["transact_write_items"], Table.__dict__.get("__deepcopy__")
    writes = {name: DynamoDBBackend.__dict__[name] for name in _WRITES}
    install()
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = transact
        for name, write in writes.items():
            setattr(DynamoDBBackend, name, write)
        if deepcopy is None:
            del Table.__deepcopy__
        else:
            Table.__deepcopy__ = deepcopy


def _transact_write_items(backend: DynamoDBBackend, transact_items: List[Dict[str, Any]]) -> None:
    with _ONE_AT_A_TIME:
        noted = _as_they_are(backend, transact_items)
        tables = {id(table): table for table, _, _, _ in noted}.values()
        streams = [(table.stream_shard, len(table.stream_shard.items)) for table in tables
                   if table.stream_shard is not None]
        token = _TRANSACTING.set(True)
        try:
            return _original_transact(backend, transact_items)
        except Exception:
            # moto put its "copies" back, the tables themselves: what the
            # transaction wrote before it failed is undone here, last first.
            for table, hash_value, range_value, item in reversed(noted):
                _put_back(table, hash_value, range_value, item)
            for shard, length in streams:
                del shard.items[length:]
            raise
        finally:
            _TRANSACTING.reset(token)


def _as_they_are(backend: DynamoDBBackend, transact_items: List[Dict[str, Any]]) -> List[Noted]:
    noted: List[Noted] = []
    for entry in transact_items:
        for operation, parameters in entry.items():
            if not isinstance(parameters, dict):
                continue
            table = backend.tables.get(parameters.get("TableName"))
            key = parameters.get("Item") if operation == "Put" else parameters.get("Key")
            if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
                continue  # moto refuses the operation itself
            if table.range_key_attr is not None and table.range_key_attr not in key:
                continue
            try:
                hash_value = DynamoType(key[table.hash_key_attr])
                range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr is not None else None
            except Exception:
                continue  # a malformed key: moto refuses it too
            item = _stored(table, hash_value, range_value)
            if operation == "Update" and item is not None:
                item = copy.deepcopy(item)
            noted.append((table, hash_value, range_value, item))
    return noted


def _stored(table: Table, hash_value: DynamoType, range_value: Optional[DynamoType]) -> Optional[Item]:
    if range_value is None:
        return table.items.get(hash_value)
    return (table.items.get(hash_value) or {}).get(range_value)


def _put_back(table: Table, hash_value: DynamoType, range_value: Optional[DynamoType], item: Optional[Item]) -> None:
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item
        return
    if item is None:
        ranges = table.items.get(hash_value)
        if ranges is not None:
            ranges.pop(range_value, None)
    else:
        table.items[hash_value][range_value] = item


def _copy_table(table: Table, memo: Dict[int, Any]) -> Table:
    if _TRANSACTING.get():
        memo[id(table)] = table
        return table
    copied = Table.__new__(type(table))
    memo[id(table)] = copied
    for name, value in table.__dict__.items():
        copied.__dict__[name] = copy.deepcopy(value, memo)
    return copied
