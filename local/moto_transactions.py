"""DynamoDB transactions in the embedded AWS: a failed one leaves no trace
on a table's stream, and none costs more as the tables grow.

moto (5.2) rolls a failed TransactWriteItems back by putting in place a deep
copy of every table the transaction names, taken before it started: every
item, and the table's stream with every record it ever held. Two things
followed for the local stack:

- The stream went with the copy. A reader holding a shard iterator taken
  before the failure (the stream pump takes one, then reads with it in the
  next request) still read the old stream, records of the failed
  transaction included, and its sequence numbers were then given again to
  the next writes, which the reader skipped as already read: an
  announcement of a change that never happened, and one lost.
- The copying grew with the tables: a webhook's transaction copied the
  entitlements and their stream, the members' customers and the event
  records whole, over 100 ms per webhook after 2,000 of them.

Here the stream stays the one object readers hold, and a failed
transaction's records are taken off it. The copy shares the items and copies
only the containers that hold them. That restores exactly what was there: a
Put or a Delete replaces or removes an item in the container and leaves the
item object alone, and the only operation that changes an item in place, an
Update, gets its item copied in full before it starts. Every other copy of a
table is moto's own, in full.
"""
import copy
from collections import defaultdict
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Dict, Iterator, List, Optional

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

# The keys each table's Update operations name, while a transaction takes its copies.
_UPDATED: ContextVar[Optional[Dict[str, List[Dict[str, Any]]]]] = ContextVar("updated", default=None)
_original_transact = DynamoDBBackend.transact_write_items


def install() -> None:
    """Make transactions cheap for every DynamoDB backend in this process."""
    DynamoDBBackend.transact_write_items = _transact_write_items
    Table.__deepcopy__ = _copy_table


@contextmanager
def installed() -> Iterator[None]:
    """The mend inside the block only: a benchmark that writes thousands of
    items in-process, beside others measured with moto as it is."""
    transact, deepcopy = DynamoDBBackend.__dict__["transact_write_items"], Table.__dict__.get("__deepcopy__")
    install()
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = transact
        if deepcopy is None:
            del Table.__deepcopy__
        else:
            Table.__deepcopy__ = deepcopy


def _transact_write_items(backend: DynamoDBBackend, transact_items: List[Dict[str, Any]]) -> None:
    updated: Dict[str, List[Dict[str, Any]]] = {}
    named = set()
    for entry in transact_items:
        for operation, parameters in entry.items():
            if not isinstance(parameters, dict):
                continue
            named.add(parameters.get("TableName"))
            if operation == "Update":
                updated.setdefault(parameters.get("TableName"), []).append(parameters.get("Key") or {})
    streams = {name: (table.stream_shard, len(table.stream_shard.items)) for name, table in backend.tables.items()
               if name in named and table.stream_shard is not None}
    token = _UPDATED.set(updated)
    try:
        return _original_transact(backend, transact_items)
    except Exception:
        # moto has put its copies of the tables back; each keeps the stream
        # readers hold, which loses what the failed transaction wrote on it.
        for name, (shard, length) in streams.items():
            del shard.items[length:]
            if name in backend.tables:
                shard.table = backend.tables[name]
        raise
    finally:
        _UPDATED.reset(token)


def _copy_table(table: Table, memo: Dict[int, Any]) -> Table:
    updated = _UPDATED.get()
    if updated is None:
        return _full_copy(table, memo)
    copied = copy.copy(table)
    memo[id(table)] = copied
    if table.range_key_attr is not None:
        copied.items = defaultdict(dict, {h: dict(ranges) for h, ranges in table.items.items()})
    else:
        copied.items = defaultdict(dict, table.items)
    for key in updated.get(table.name, ()):
        _copy_item(table, copied, key, memo)
    # The same stream: a failed transaction's records are taken off it above.
    copied.stream_shard = table.stream_shard
    return copied


def _copy_item(table: Table, copied: Table, key: Dict[str, Any], memo: Dict[int, Any]) -> None:
    if table.hash_key_attr not in key:
        return  # moto refuses the operation itself
    hash_value = DynamoType(key[table.hash_key_attr])
    if table.range_key_attr is None:
        if hash_value in table.items:
            copied.items[hash_value] = copy.deepcopy(table.items[hash_value], memo)
        return
    if table.range_key_attr not in key:
        return
    range_value = DynamoType(key[table.range_key_attr])
    ranges = table.items.get(hash_value) or {}
    if range_value in ranges:
        copied.items[hash_value][range_value] = copy.deepcopy(ranges[range_value], memo)


def _full_copy(table: Table, memo: Dict[int, Any]) -> Table:
    copied = Table.__new__(type(table))
    memo[id(table)] = copied
    for name, value in table.__dict__.items():
        copied.__dict__[name] = copy.deepcopy(value, memo)
    return copied
