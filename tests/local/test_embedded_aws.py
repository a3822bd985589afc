"""The embedded AWS over a long run: the copies transactions take to roll
back are not kept."""
import gc
import time

import boto3
import pytest
from moto.dynamodb.models.table import Table

from local.embedded_aws import EmbeddedAWS

STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


@pytest.fixture(scope="module")
def embedded_aws():
    aws = EmbeddedAWS(port=0).start()
    yield aws
    aws.stop()


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


def test_the_copies_transactions_take_are_not_kept(dynamodb):
    table = make_table(dynamodb, with_range=False)
    for i in range(50):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "item%d" % i}}}}])

    gc.collect()
    tables = [o for o in gc.get_objects() if isinstance(o, Table) and o.name == table]
    assert len(tables) == 1
