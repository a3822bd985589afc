"""The mend of moto's queues: what SQS answers is moto's own, and a queue's
requests do not pass over every message it holds."""
import json
from contextlib import contextmanager

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sqs.models import Message, Queue

from local import moto_queues


def test_installed_mends_queues_inside_the_block_and_puts_back_what_was_there_after():
    before = {name: Queue.__dict__[name] for name in ("attributes", "messages", "delete_message")}
    with moto_queues.installed():
        assert Queue.__dict__["delete_message"] is moto_queues._delete_message
    assert {name: Queue.__dict__[name] for name in before} == before


def _story(sqs) -> dict:
    """A queue with a dead-letter queue and a policy, messages sent, delayed,
    received, deleted (twice) and one deleted with a handle it never had:
    every answer along the way."""
    answers = {}
    dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName="work", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2}),
        "Policy": json.dumps({"Version": "2012-10-17", "Statement": []}), "VisibilityTimeout": "60"})["QueueUrl"]
    for index in range(20):
        sqs.send_message(QueueUrl=url, MessageBody="m%d" % index)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5)["Messages"]
    answers["received"] = [message["Body"] for message in received]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"])
    with pytest.raises(ClientError) as unknown:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    answers["unknown"] = unknown.value.response["Error"]["Code"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    for moment in ("CreatedTimestamp", "LastModifiedTimestamp"):
        attributes.pop(moment)
    answers["attributes"] = attributes
    answers["some"] = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "RedrivePolicy"])["Attributes"]
    answers["rest"] = sorted(message["Body"] for message in
                             sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"])
    fifo = sqs.create_queue(QueueName="work.fifo", Attributes={"FifoQueue": "true",
                                                                "ContentBasedDeduplication": "true"})["QueueUrl"]
    for _ in range(2):
        sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
    fifo_attributes = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])["Attributes"]
    answers["fifo"] = {name: fifo_attributes[name] for name in
                       ("ApproximateNumberOfMessages", "ContentBasedDeduplication", "FifoQueue")}
    return answers


@contextmanager
def _as(mended: bool):
    """Queues mended or as moto has them, whatever the session installed."""
    current = {name: Queue.__dict__[name] for name in moto_queues.ORIGINALS}
    if mended:
        moto_queues.install()
    else:
        for name, original in moto_queues.ORIGINALS.items():
            setattr(Queue, name, original)
    try:
        yield
    finally:
        for name, kept in current.items():
            setattr(Queue, name, kept)


def _told(mended: bool) -> dict:
    with mock_aws(), _as(mended):
        return _story(boto3.client("sqs", region_name="us-east-1"))


def test_every_answer_is_the_one_moto_gives_unmended():
    mended = _told(True)
    assert mended == _told(False)
    assert mended["attributes"]["ApproximateNumberOfMessages"] == "15"
    assert mended["attributes"]["ApproximateNumberOfMessagesNotVisible"] == "4"
    assert mended["attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert json.loads(mended["attributes"]["RedrivePolicy"])["maxReceiveCount"] == 2
    assert mended["unknown"] == "ReceiptHandleIsInvalid"
    assert mended["fifo"]["ApproximateNumberOfMessages"] == "1"


class _Visibility:
    """How often moto asks a message whether it is visible."""

    def __init__(self):
        self.asked = 0
        self._visible = Message.__dict__["visible"]

    def __enter__(self):
        def visible(message):
            self.asked += 1
            return self._visible.fget(message)
        Message.visible = property(visible)
        return self

    def __exit__(self, *exc_info):
        Message.visible = self._visible


def _one_more_through(mended: bool) -> int:
    """With 1,000 messages queued, one more sent, received and deleted: how
    often a message was asked whether it is visible."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="deliveries")["QueueUrl"]
        for batch in range(100):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(index), "MessageBody": "%d-%d" % (batch, index)}
                                                          for index in range(10)])
        with _Visibility() as visibility, _as(mended):
            message = _send_receive_delete(sqs, url)
        assert message["Body"] == "0-0"
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert counts["Attributes"]["ApproximateNumberOfMessages"] == "1000"
        return visibility.asked


def _send_receive_delete(sqs, url: str) -> dict:
    sqs.send_message(QueueUrl=url, MessageBody="one more")
    message = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return message


def test_sending_receiving_and_deleting_do_not_pass_over_a_full_queue():
    assert _one_more_through(mended=False) > 4000  # three counts on the send, the listing on the receive
    assert _one_more_through(mended=True) == 1  # the message received, asked once more as moto does
