"""The mend of moto's transactions: for one block only (a benchmark's part),
and a failed transaction undone item by item, in the same tables."""
import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

from local import moto_transactions


def test_installed_mends_transactions_inside_the_block_and_puts_back_what_was_there_after():
    before = DynamoDBBackend.__dict__["transact_write_items"], Table.__dict__.get("__deepcopy__")
    with moto_transactions.installed():
        assert DynamoDBBackend.__dict__["transact_write_items"] is moto_transactions._transact_write_items
        assert Table.__dict__["__deepcopy__"] is moto_transactions._copy_table
    assert (DynamoDBBackend.__dict__["transact_write_items"], Table.__dict__.get("__deepcopy__")) == before


def _table(dynamodb, name: str) -> None:
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                     {"AttributeName": "sk", "KeyType": "RANGE"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                {"AttributeName": "sk", "AttributeType": "S"}],
                          StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})


def _everything(dynamodb, name: str) -> list:
    return sorted(dynamodb.scan(TableName=name, ConsistentRead=True)["Items"], key=repr)


def test_a_failed_transaction_across_two_tables_copies_only_the_items_it_names_and_undoes_both():
    with moto_transactions.installed(), mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        for name in ("first", "second"):
            _table(dynamodb, name)
        for index in range(500):
            dynamodb.put_item(TableName="first", Item={"pk": {"S": "m%d" % index}, "sk": {"S": "x"},
                                                       "v": {"N": "1"}})
        dynamodb.put_item(TableName="second", Item={"pk": {"S": "lock"}, "sk": {"S": "x"}})
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        tables = dict(backend.tables)
        before = {name: _everything(dynamodb, name) for name in tables}
        records = {name: len(table.stream_shard.items) for name, table in tables.items()}
        made = len(Table.instances_tracked), len(Item.instances_tracked)

        with pytest.raises(ClientError) as failure:
            dynamodb.transact_write_items(TransactItems=[
                {"Update": {"TableName": "first", "Key": {"pk": {"S": "m1"}, "sk": {"S": "x"}},
                            "UpdateExpression": "SET v = v + :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
                {"Delete": {"TableName": "first", "Key": {"pk": {"S": "m2"}, "sk": {"S": "x"}}}},
                {"Put": {"TableName": "second", "Item": {"pk": {"S": "new"}, "sk": {"S": "x"}}}},
                {"ConditionCheck": {"TableName": "second", "Key": {"pk": {"S": "lock"}, "sk": {"S": "x"}},
                                    "ConditionExpression": "attribute_not_exists(pk)"}}])

        made = len(Table.instances_tracked) - made[0], len(Item.instances_tracked) - made[1]
        assert failure.value.response["Error"]["Code"] == "TransactionCanceledException"
        assert {name: _everything(dynamodb, name) for name in tables} == before
        assert {name: len(table.stream_shard.items) for name, table in tables.items()} == records
        # The same table objects, and no copy of a table or of the 500 items.
        assert all(backend.tables[name] is table for name, table in tables.items())
        assert made[0] == 0
        assert made[1] <= 4
