"""Move a dead-letter queue's messages back to the queue they came from.

    python -m infra.redrive stripe-connector-events     # or stripe-connector-sync

QUEUE is the queue as chalicelib.queues names it: the events queue
(`stripe_events`) or the work queue (`sync_worker`); the dead-letter queue's
own name (…-dead-letter) is taken too. Run it once the cause of the failures
is fixed: each message goes back with its body and message attributes, and
its function tries it again, five times, as if it were new.

The messages are received from the dead-letter queue ten at a time, sent to
the queue, and deleted from the dead-letter queue only once the queue has
taken them: a message SQS refused stays where it was, and the exit status
is 1. SQS's own StartMessageMoveTask does the same in AWS, but the local
stack's AWS (moto) has no move task, so this is receive, send and delete,
the same everywhere. A message whose delete failed after its send comes
back with the next redrive, and its function takes it twice, as SQS may
hand out any message twice (a Stripe event is then a duplicate). So a
redrive is safe to repeat; with the dead-letter queue empty it moves
nothing.

AWS is reached as the AWS CLI reaches it: the credentials and region of the
environment or profile, and AWS_ENDPOINT_URL for another AWS (the local
stack's; `make redrive QUEUE=…`). The settings are not read: moving messages
needs neither Stripe's keys nor the connector's secrets.
"""
import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TextIO, Tuple

import boto3
import botocore.exceptions

from chalicelib.queues import EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE, SYNC_DEAD_LETTER_QUEUE, SYNC_QUEUE

USAGE_ERROR = 2
FAILED = 1

# Each queue's dead-letter queue, as infra/template.yaml's redrive policies name them.
DEAD_LETTER_QUEUES = {SYNC_QUEUE: SYNC_DEAD_LETTER_QUEUE, EVENTS_QUEUE: EVENTS_DEAD_LETTER_QUEUE}
# SQS hands out at most ten messages per ReceiveMessage and takes ten per batch.
BATCH = 10
# Long polling asks every SQS server: a short poll may answer empty while
# messages wait, which would end the move early.
WAIT_SECONDS = 1
# Long enough to send and delete a batch; a message not moved by then is
# visible again in the dead-letter queue for the next redrive.
VISIBILITY_SECONDS = 60


class UnknownQueue(ValueError):
    """A name that is none of the connector's queues."""


def queues_for(name: str) -> Tuple[str, str]:
    """(queue, its dead-letter queue) for a queue's name or its dead-letter queue's."""
    if name in DEAD_LETTER_QUEUES:
        return name, DEAD_LETTER_QUEUES[name]
    for queue, dead_letters in DEAD_LETTER_QUEUES.items():
        if name == dead_letters:
            return queue, dead_letters
    known = ", ".join(sorted(DEAD_LETTER_QUEUES))
    raise UnknownQueue("%r is not one of the connector's queues (%s, or their dead-letter queues)"
                       % (name, known))


def _attributes_to_send(received: Dict[str, Any]) -> Dict[str, Any]:
    # ReceiveMessage also answers the list fields SQS reserves, which
    # SendMessage would refuse if they held anything.
    return {name: {key: value for key, value in attribute.items()
                   if key in ("DataType", "StringValue", "BinaryValue")}
            for name, attribute in received.items()}


@dataclass
class Moved:
    moved: int = 0
    # Not taken by the queue: left in the dead-letter queue.
    refused: int = 0
    # Sent, but still in the dead-letter queue too: the next redrive sends them again.
    not_deleted: int = 0
    failures: List[str] = field(default_factory=list)


def redrive(sqs: Any, queue_url: str, dead_letters_url: str) -> Moved:
    """Every message of the dead-letter queue moved to the queue, a batch
    at a time, until the dead-letter queue has none left to hand out."""
    result = Moved()
    while True:
        messages = sqs.receive_message(
            QueueUrl=dead_letters_url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=WAIT_SECONDS,
            VisibilityTimeout=VISIBILITY_SECONDS, MessageAttributeNames=["All"]).get("Messages") or []
        if not messages:
            return result
        entries: List[Dict[str, Any]] = []
        for index, message in enumerate(messages):
            entry = {"Id": str(index), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = _attributes_to_send(message["MessageAttributes"])
            entries.append(entry)
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except botocore.exceptions.ClientError as exc:
            # Received, so invisible until VISIBILITY_SECONDS pass: the loop
            # goes on to the others, and these wait for the next redrive.
            result.refused += len(messages)
            result.failures.append(str(exc))
            continue
        sent = {entry["Id"] for entry in answer.get("Successful") or []}
        result.refused += len(messages) - len(sent)
        result.failures.extend("%s: %s" % (entry.get("Code"), entry.get("Message"))
                               for entry in answer.get("Failed") or [])
        if not sent:
            continue
        try:
            deleted = sqs.delete_message_batch(QueueUrl=dead_letters_url, Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages) if str(index) in sent])
            not_deleted = len(deleted.get("Failed") or [])
        except botocore.exceptions.ClientError as exc:
            not_deleted = len(sent)
            result.failures.append(str(exc))
        result.moved += len(sent)
        result.not_deleted += not_deleted


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.redrive", description=__doc__.split("\n")[0])
    parser.add_argument("queue", metavar="QUEUE", help="%s or %s (or its dead-letter queue)"
                        % (EVENTS_QUEUE, SYNC_QUEUE))
    args = parser.parse_args(argv)
    try:
        queue, dead_letters = queues_for(args.queue)
    except UnknownQueue as exc:
        print("redrive: %s" % exc, file=err)
        return USAGE_ERROR

    try:
        sqs = boto3.client("sqs")
        queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        dead_letters_url = sqs.get_queue_url(QueueName=dead_letters)["QueueUrl"]
    except botocore.exceptions.NoRegionError:
        print("redrive: no AWS region: set AWS_DEFAULT_REGION (or a profile's region)", file=err)
        return USAGE_ERROR
    except botocore.exceptions.ClientError as exc:
        print("redrive: SQS did not find %s and %s: %s" % (queue, dead_letters, exc), file=err)
        return FAILED
    result = redrive(sqs, queue_url, dead_letters_url)
    print("Moved %s from %s back to %s." % (_messages(result.moved), dead_letters, queue), file=out)
    if result.refused:
        print("redrive: %s were not taken by %s and stay in %s for the next redrive (visible again within "
              "%d s): %s" % (_messages(result.refused), queue, dead_letters, VISIBILITY_SECONDS,
                             "; ".join(sorted(set(result.failures)))), file=err)
    if result.not_deleted:
        print("redrive: %s were sent but not deleted from %s; the next redrive sends them again, and "
              "their function takes them twice" % (_messages(result.not_deleted), dead_letters), file=err)
    return FAILED if result.refused or result.not_deleted else 0


def _messages(count: int) -> str:
    return "%d message%s" % (count, "" if count == 1 else "s")


if __name__ == "__main__":
    sys.exit(main())
