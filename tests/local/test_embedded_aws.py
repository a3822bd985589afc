"""The embedded AWS over a long run: a transaction that fails leaves every
item and the stream exactly as they were, also for a reader already holding
a shard iterator, and the copies transactions take to roll back are not
kept."""
import gc
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.table import Table


STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


@pytest.fixture
def dynamodb(embedded_aws):
    return boto3.client("dynamodb", endpoint_url=embedded_aws.url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def make_table(dynamodb, with_range: bool) -> str:
    name = "t%d" % time.time_ns()
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if with_range:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=keys,
                          AttributeDefinitions=attributes, StreamSpecification=STREAM)
    return name


def key(name: str, with_range: bool) -> dict:
    return {"pk": {"S": name}, "sk": {"S": "one"}} if with_range else {"pk": {"S": name}}


def streams_client(embedded_aws):
    return boto3.client("dynamodbstreams", endpoint_url=embedded_aws.url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def shard_iterator(embedded_aws, dynamodb, table: str, after: str = None) -> str:
    streams = streams_client(embedded_aws)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    where = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after} if after
             else {"ShardIteratorType": "TRIM_HORIZON"})
    return streams.get_shard_iterator(StreamArn=arn, ShardId=shard, **where)["ShardIterator"]


def stream_records(embedded_aws, iterator: str) -> list:
    return streams_client(embedded_aws).get_records(ShardIterator=iterator, Limit=1000)["Records"]


def stream_length(embedded_aws, dynamodb, table: str) -> int:
    return len(stream_records(embedded_aws, shard_iterator(embedded_aws, dynamodb, table)))


def everything(dynamodb, table: str) -> list:
    return sorted(dynamodb.scan(TableName=table, ConsistentRead=True)["Items"], key=repr)


@pytest.mark.parametrize("with_range", [False, True], ids=["hash key", "hash and range key"])
def test_a_failed_transaction_leaves_every_item_and_the_stream_as_they_were(embedded_aws, dynamodb, with_range):
    table = make_table(dynamodb, with_range)
    for name in ("replaced", "updated", "deleted", "untouched"):
        dynamodb.put_item(TableName=table, Item=dict(key(name, with_range), value={"S": "before"},
                                                     tags={"L": [{"S": "kept"}]}))
    before, records = everything(dynamodb, table), stream_length(embedded_aws, dynamodb, table)

    with pytest.raises(ClientError) as failure:
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": dict(key("replaced", with_range), value={"S": "after"})}},
            {"Update": {"TableName": table, "Key": key("updated", with_range),
                        "UpdateExpression": "SET #v = :v, tags[0] = :t",
                        "ExpressionAttributeNames": {"#v": "value"},
                        "ExpressionAttributeValues": {":v": {"S": "after"}, ":t": {"S": "changed"}}}},
            {"Delete": {"TableName": table, "Key": key("deleted", with_range)}},
            {"Put": {"TableName": table, "Item": dict(key("new", with_range), value={"S": "after"})}},
            {"ConditionCheck": {"TableName": table, "Key": key("untouched", with_range),
                                "ConditionExpression": "attribute_not_exists(pk)"}}])

    assert failure.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert everything(dynamodb, table) == before
    assert stream_length(embedded_aws, dynamodb, table) == records


def test_a_transaction_that_succeeds_after_one_that_failed_writes_and_streams_it(embedded_aws, dynamodb):
    table = make_table(dynamodb, with_range=False)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    condition = {"ConditionExpression": "n < :n", "ExpressionAttributeValues": {":n": {"N": "1"}}}
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": dict({"TableName": table, "Item": {"pk": {"S": "a"}, "n": {"N": "0"}}}, **condition)}])

    dynamodb.transact_write_items(TransactItems=[
        {"Update": {"TableName": table, "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": {"N": "2"}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": "b"}, "n": {"N": "1"}}}}])

    assert everything(dynamodb, table) == [{"n": {"N": "2"}, "pk": {"S": "a"}}, {"n": {"N": "1"}, "pk": {"S": "b"}}]
    assert stream_length(embedded_aws, dynamodb, table) == 3


def test_a_reader_holding_an_iterator_sees_no_record_of_a_failed_transaction_and_every_later_one(
        embedded_aws, dynamodb):
    # The stream pump takes an iterator in one request and reads with it in
    # the next; a webhook's transaction may fail in between.
    table = make_table(dynamodb, with_range=False)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": "first"}})
    [first] = stream_records(embedded_aws, shard_iterator(embedded_aws, dynamodb, table))
    held = shard_iterator(embedded_aws, dynamodb, table, after=first["dynamodb"]["SequenceNumber"])
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "a"}, "v": {"S": "never"}}}},
            {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "a"}},
                                "ConditionExpression": "attribute_not_exists(pk)"}}])

    assert stream_records(embedded_aws, held) == []
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": "second"}})
    later = stream_records(embedded_aws, shard_iterator(embedded_aws, dynamodb, table,
                                                        after=first["dynamodb"]["SequenceNumber"]))
    assert [r["dynamodb"]["NewImage"]["v"]["S"] for r in later] == ["second"]


def test_the_copies_transactions_take_are_not_kept(dynamodb):
    table = make_table(dynamodb, with_range=False)
    for i in range(50):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "item%d" % i}}}}])

    gc.collect()
    tables = [o for o in gc.get_objects() if isinstance(o, Table) and o.name == table]
    assert len(tables) == 1
