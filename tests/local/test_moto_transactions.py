"""The mend of moto's transactions for one block only (a benchmark's part)."""
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

from local import moto_transactions


def test_installed_mends_transactions_inside_the_block_and_puts_back_what_was_there_after():
    before = DynamoDBBackend.__dict__["transact_write_items"], Table.__dict__.get("__deepcopy__")
    with moto_transactions.installed():
        assert DynamoDBBackend.__dict__["transact_write_items"] is moto_transactions._transact_write_items
        assert Table.__dict__["__deepcopy__"] is moto_transactions._copy_table
    assert (DynamoDBBackend.__dict__["transact_write_items"], Table.__dict__.get("__deepcopy__")) == before
