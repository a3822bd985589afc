"""The local stack's servers under concurrent requests: the embedded AWS
stays consistent."""
import sys
import threading
import time
from contextlib import contextmanager

import boto3
import botocore.config
import pytest

from local.embedded_aws import EmbeddedAWS

NO_RETRIES = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1},
                                    max_pool_connections=64)


@contextmanager
def frequent_thread_switches():
    # Races between threads show in a few hundred requests, not in thousands.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def run_together(count, work):
    """Run work(i) for i in range(count), in threads released at once."""
    start = threading.Barrier(count)
    outcomes = [None] * count

    def run(i):
        start.wait()
        try:
            outcomes[i] = work(i)
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.fixture(scope="module")
def embedded_aws():
    aws = EmbeddedAWS(port=0).start()
    yield aws
    aws.stop()


# The embedded AWS

def test_the_embedded_aws_keeps_concurrent_transactions_and_writes_apart(embedded_aws):
    dynamodb = boto3.client("dynamodb", endpoint_url=embedded_aws.url, region_name="us-east-1",
                            config=NO_RETRIES)
    run = "race%d" % time.time_ns()
    for table in (run + "-a", run + "-b"):
        dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    for i in range(100):
        dynamodb.put_item(TableName=run + "-b", Item={"pk": {"S": "before%d" % i}})

    def writes(worker):
        client = boto3.client("dynamodb", endpoint_url=embedded_aws.url, region_name="us-east-1",
                              config=NO_RETRIES)
        for i in range(12):
            key = {"pk": {"S": "w%d-%d" % (worker, i)}}
            if i % 2:
                client.put_item(TableName=run + "-a", Item=key)
            else:
                client.transact_write_items(TransactItems=[
                    {"Put": {"TableName": run + "-a", "Item": key,
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Put": {"TableName": run + "-b", "Item": key}}])

    with frequent_thread_switches():
        outcomes = run_together(16, writes)

    assert outcomes == [None] * 16
    count = lambda table: dynamodb.scan(TableName=table, Select="COUNT")["Count"]  # noqa: E731
    assert (count(run + "-a"), count(run + "-b")) == (16 * 12, 100 + 16 * 6)
