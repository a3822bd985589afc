"""The local stand-in for Lambda's DynamoDB stream event source mapping: it
hands a table's stream records to a function in order, in batches, and after
a reported failure starts again from the first failed record."""
import logging
import threading
from typing import Any, Callable, Dict, Optional

from local.pump import Pump

logger = logging.getLogger("local.streams")

Handler = Callable[[Dict[str, Any], Any], Optional[Dict[str, Any]]]


class StreamPump(Pump):
    def __init__(self, dynamodb: Any, streams: Any, table_name: str, handler: Handler,
                 batch_size: int = 100):
        super().__init__("stream pump of " + table_name, logger)
        self._dynamodb = dynamodb
        self._streams = streams
        self._table_name = table_name
        self._handler = handler
        self._batch_size = batch_size
        self._after: Optional[str] = None
        self._lock = threading.Lock()

    def skip_to_end(self) -> None:
        """Start from what is written next (LATEST), not the stream's beginning."""
        with self._lock:
            records = self._read(None, 10_000)
            while records:
                self._after = records[-1]["dynamodb"]["SequenceNumber"]
                records = self._read(self._after, 10_000)

    def drain(self) -> int:
        """Deliver every waiting record; stop at the first batch that reports
        a failure (it comes again on the next drain). Returns the number of
        records delivered and not failed."""
        delivered = 0
        with self._lock:
            while True:
                records = self._read(self._after, self._batch_size)
                if not records:
                    return delivered
                answer = self._handler({"Records": records}, None) or {}
                failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures") or []}
                for record in records:
                    sequence = record["dynamodb"]["SequenceNumber"]
                    if sequence in failed:
                        return delivered
                    self._after = sequence
                    delivered += 1

    def start(self, interval: float = 0.5) -> "StreamPump":
        self._run(interval)
        return self

    def _round(self) -> None:
        self.drain()

    def _read(self, after: Optional[str], limit: int) -> list:
        # A fresh iterator each time, as a restarted consumer would take one.
        arn = self._dynamodb.describe_table(TableName=self._table_name)["Table"]["LatestStreamArn"]
        shards = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        records = []
        for shard in shards:
            if after is None:
                iterator = self._streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
            else:
                iterator = self._streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=after)
            records.extend(self._streams.get_records(
                ShardIterator=iterator["ShardIterator"], Limit=limit)["Records"])
        return records
