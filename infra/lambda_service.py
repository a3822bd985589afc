"""The stack's functions run from deployment.zip as Lambda runs them, and
handed the events Lambda would hand them: what infra/deployed.py's stack
in moto is driven by.

Each function runs in an interpreter of its own with only what Lambda
gives it: the unzipped zip as its task root, the runtime's standard library
(`python3.11 -I -S -B`, no site-packages), the environment the stack gave
it (read back from moto's Lambda), what Lambda itself sets, and the role's
credentials (infra/lambda_runner.py). It starts once, as a cold start does,
and is then handed one event per invocation.

Events are AWS's own shapes (tests/rehearsal/events) with their values
filled in. The triggers stand in for Lambda's pollers of the stack's event
source mappings, which moto is kept from running (infra/moto_gaps.py): a
queue's messages in batches, deleted once the function returns; a DynamoDB
stream's records in order, from a reported failure again.
"""
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, TextIO

from infra.project import ROOT

RUNNER = os.path.join(ROOT, "infra", "lambda_runner.py")


class StackLike(Protocol):
    """What the functions and triggers read of infra/deployed.py's Stack,
    named by its shape: deployed.py imports this module, not the reverse."""
    aws: Any  # its url and credentials_of
    region: str
    stage: str

    def client(self, service: str) -> Any: ...

    def function(self, logical: str) -> Dict[str, Any]: ...


# ------------------------------------------------------------------ the functions

def runtime_python(runtime: str) -> str:
    """This machine's interpreter for the functions' runtime (python3.11):
    the base one, not the virtualenv's, whose packages the functions must not see."""
    interpreter = getattr(sys, "_base_executable", None) or sys.executable
    running = "python%d.%d" % sys.version_info[:2]
    if runtime != running:
        raise RuntimeError("The functions run on %s but this is %s" % (runtime, running))
    return interpreter


def unpack(zip_path: str, into: str) -> str:
    """The zip unpacked as Lambda unpacks it into /var/task; the task root."""
    task_root = os.path.join(into, "task")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(task_root)
    return task_root


def lambda_environment(configuration: Dict[str, Any], task_root: str, region: str,
                       credentials: Dict[str, str], extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The function's variables as the stack gave them, what Lambda's
    python3.11 runtime sets beside them, and `extra` (where AWS and Stripe
    are, for a rehearsal) on top."""
    name = configuration["FunctionName"]
    environment = dict((configuration.get("Environment") or {}).get("Variables") or {})
    environment.update({
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": configuration.get("Version") or "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(configuration["MemorySize"]),
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/%s" % name,
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_%s" % configuration["Runtime"],
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": task_root,
        "_HANDLER": configuration["Handler"],
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        # Not Lambda's: the function's Timeout, which the runner's context counts down.
        "RUNNER_TIMEOUT_SECONDS": str(configuration["Timeout"]),
    })
    environment.update(extra or {})
    return environment


@dataclass
class Invocation:
    request_id: str
    result: Any = None
    error: Optional[Dict[str, Any]] = None
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class FunctionProcess:
    """One function's warm container: its interpreter started once (the
    cold start), then handed one event per invocation (infra/lambda_runner.py)."""

    def __init__(self, configuration: Dict[str, Any], environment: Dict[str, str], task_root: str):
        self.configuration = configuration
        self.environment = environment
        self.task_root = task_root
        self.init: Dict[str, Any] = {}
        self._process: Optional[subprocess.Popen] = None
        self._log: Optional[TextIO] = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.configuration["FunctionName"]

    def start(self) -> "FunctionProcess":
        return self.launch().ready()

    def launch(self) -> "FunctionProcess":
        """The interpreter started; `ready()` waits for its init (the handler's import)."""
        interpreter = runtime_python(self.configuration["Runtime"])
        self._log = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._process = subprocess.Popen([interpreter, "-I", "-S", "-B", RUNNER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log, env=self.environment,
                                         cwd=self.task_root)
        return self

    def ready(self) -> "FunctionProcess":
        self.init = self._answer(timeout=60)["init"]
        return self

    def invoke(self, event: Any, request_id: Optional[str] = None) -> Invocation:
        with self._lock:
            if self._process is None:
                self.start()
            request_id = request_id or str(uuid.uuid4())
            self._log.seek(0, os.SEEK_END)
            began = self._log.tell()
            call = {"event": event, "request_id": request_id,
                    "invoked_function_arn": self.configuration["FunctionArn"]}
            self._process.stdin.write((json.dumps(call) + "\n").encode("utf-8"))
            self._process.stdin.flush()
            try:
                answer = self._answer(timeout=float(self.configuration["Timeout"]) + 5)
            except TimeoutError:
                self.close()
                answer = {"error": {"errorMessage": "Task timed out after %.2f seconds"
                                    % self.configuration["Timeout"], "errorType": "Sandbox.Timedout"}}
            self._log.seek(began)
            return Invocation(request_id, answer.get("result"), answer.get("error"), self._log.read())

    def _answer(self, timeout: float) -> Dict[str, Any]:
        out = self._process.stdout
        ready, _, _ = select.select([out], [], [], timeout)
        if not ready:
            raise TimeoutError("%s answered nothing in %.0f s" % (self.name, timeout))
        line = out.readline()
        if not line:
            self._log.seek(0)
            raise RuntimeError("%s exited (%s): %s" % (self.name, self._process.wait(), self._log.read()[-3000:]))
        return json.loads(line)

    def close(self) -> None:
        self.stop()
        self.wait()

    def stop(self) -> None:
        """Its stdin closed: the runner returns once the invocation it is in ends."""
        if self._process is not None and not self._process.stdin.closed:
            self._process.stdin.close()

    def wait(self) -> None:
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None


class Functions:
    """The stack's functions, each started (once) in its own process with
    the environment the stack gave it."""

    def __init__(self, stack: StackLike, task_root: str, extra: Optional[Dict[str, str]] = None):
        self.stack = stack
        self.task_root = task_root
        self.extra = dict(extra or {})
        self._started: Dict[str, FunctionProcess] = {}

    def environment(self, logical: str) -> Dict[str, str]:
        configuration = self.stack.function(logical)
        credentials = self.stack.aws.credentials_of(configuration["Role"], configuration["FunctionName"])
        return lambda_environment(configuration, self.task_root, self.stack.region, credentials,
                                  dict(self.extra, AWS_ENDPOINT_URL=self.stack.aws.url))

    def __getitem__(self, logical: str) -> FunctionProcess:
        self.start(logical)
        return self._started[logical]

    def start(self, *logicals: str) -> "Functions":
        """The functions' interpreters started side by side, each ready when this returns."""
        launched = []
        for logical in logicals:
            if logical not in self._started:
                self._started[logical] = FunctionProcess(
                    self.stack.function(logical), self.environment(logical), self.task_root).launch()
                launched.append(self._started[logical])
        for process in launched:
            process.ready()
        return self

    def close(self) -> None:
        for process in self._started.values():
            process.stop()
        for process in self._started.values():
            process.wait()
        self._started.clear()


# ------------------------------------------------------------------ events

# A value that leaves its key (or list item) out of a filled event: a header
# the request does not send, the old image of an inserted item.
OMIT = object()


def fill(shape: Any, values: Dict[str, Any]) -> Any:
    """An event shape (tests/rehearsal/events) with its {{placeholders}}: a
    string that is one placeholder becomes the value, whatever its type (OMIT
    drops it, and a list left empty by it); a placeholder inside a string
    is written in. A placeholder without a value is a KeyError."""
    if isinstance(shape, dict):
        filled = {key: fill(value, values) for key, value in shape.items()}
        return {key: value for key, value in filled.items() if value is not OMIT}
    if isinstance(shape, list):
        items = [fill(item, values) for item in shape]
        kept = [item for item in items if item is not OMIT]
        return OMIT if items and not kept else kept
    if not isinstance(shape, str) or "{{" not in shape:
        return shape
    if shape.startswith("{{") and shape.endswith("}}") and shape.count("{{") == 1:
        return values[shape[2:-2]]
    text = shape
    for name, value in values.items():
        text = text.replace("{{%s}}" % name, str(value))
    if "{{" in text:
        raise KeyError("no value for %s" % text[text.index("{{"):text.index("}}") + 2])
    return text


def _from_source(mapping: Dict[str, Any], record: Dict[str, Any]) -> Dict[str, Any]:
    if record.get("eventSourceARN") != mapping["EventSourceArn"]:
        raise ValueError("The record's shape names %s, the mapping reads %s"
                         % (record.get("eventSourceARN"), mapping["EventSourceArn"]))
    return record


class QueueTrigger:
    """Lambda's poller for an SQS event source mapping of the stack: receives
    up to BatchSize messages, hands them to the function in one event made
    of `record` (the shape of one record), and deletes them when it returns;
    a failed batch stays on the queue for its next try."""

    def __init__(self, stack: StackLike, mapping: Dict[str, Any], function: FunctionProcess, record: Dict[str, Any]):
        self.stack = stack
        self.mapping = mapping
        self.function = function
        self.record = record
        self.sqs = stack.client("sqs")
        queue_name = mapping["EventSourceArn"].rsplit(":", 1)[1]
        self.url = self.sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]

    def drain(self, limit: int = 50) -> List[Invocation]:
        done = []
        for _ in range(limit):
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=self.mapping["BatchSize"],
                                                AttributeNames=["All"], MessageAttributeNames=["All"]).get(
                "Messages") or []
            if not messages:
                break
            invocation = self.function.invoke({"Records": [self.shape(m) for m in messages]})
            done.append(invocation)
            if invocation.ok:
                for message in messages:
                    self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            else:
                break  # invisible for the queue's visibility timeout, as after a failed try
        return done

    def shape(self, message: Dict[str, Any]) -> Dict[str, Any]:
        attributes = message.get("Attributes") or {}
        return _from_source(self.mapping, fill(self.record, {
            "message_id": message["MessageId"], "receipt_handle": message["ReceiptHandle"],
            "body": message["Body"], "md5_of_body": message["MD5OfBody"],
            "receive_count": attributes.get("ApproximateReceiveCount", "1"),
            "sent_timestamp": attributes.get("SentTimestamp", ""),
            "sender_id": attributes.get("SenderId", ""),
            "first_receive_timestamp": attributes.get("ApproximateFirstReceiveTimestamp", ""),
            "region": self.stack.region, "account": self.mapping["EventSourceArn"].split(":")[4],
        }))


class StreamTrigger:
    """Lambda's poller for the stack's DynamoDB stream mapping: records from
    its StartingPosition, BatchSize at a time, in order; with
    ReportBatchItemFailures the first reported failure and the records after
    it come again."""

    def __init__(self, stack: StackLike, mapping: Dict[str, Any], function: FunctionProcess, record: Dict[str, Any]):
        self.stack = stack
        self.mapping = mapping
        self.function = function
        self.record = record
        self.streams = stack.client("dynamodbstreams")
        self._after: Optional[str] = None

    def drain(self, limit: int = 50) -> List[Invocation]:
        done = []
        for _ in range(limit):
            records = self._read()
            if not records:
                break
            invocation = self.function.invoke({"Records": [self.shape(r) for r in records]})
            done.append(invocation)
            if not invocation.ok:
                break
            failed = {f["itemIdentifier"] for f in (invocation.result or {}).get("batchItemFailures") or []}
            if "ReportBatchItemFailures" not in (self.mapping.get("FunctionResponseTypes") or []):
                failed = set()
            for record in records:
                if record["dynamodb"]["SequenceNumber"] in failed:
                    return done
                self._after = record["dynamodb"]["SequenceNumber"]
        return done

    def _read(self) -> List[Dict[str, Any]]:
        arn = self.mapping["EventSourceArn"]
        records = []
        for shard in self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            if self._after is None:
                where = {"ShardIteratorType": self.mapping.get("StartingPosition") or "TRIM_HORIZON"}
            else:
                where = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._after}
            iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], **where)
            records += self.streams.get_records(ShardIterator=iterator["ShardIterator"],
                                                Limit=self.mapping["BatchSize"])["Records"]
        return records[:self.mapping["BatchSize"]]

    def shape(self, record: Dict[str, Any]) -> Dict[str, Any]:
        change = record["dynamodb"]
        created = change.get("ApproximateCreationDateTime")
        arn = self.mapping["EventSourceArn"]
        return _from_source(self.mapping, fill(self.record, {
            "event_id": record["eventID"], "event_name": record["eventName"],
            # Lambda's event has the time in seconds; the stream API's, a datetime.
            "approximate_creation_time": int(created.timestamp()) if hasattr(created, "timestamp") else created,
            "keys": change["Keys"], "new_image": change.get("NewImage", OMIT),
            "old_image": change.get("OldImage", OMIT), "sequence_number": change["SequenceNumber"],
            "size_bytes": change["SizeBytes"], "region": self.stack.region, "account": arn.split(":")[4],
            "stage": self.stack.stage, "stream_label": arn.rsplit("/", 1)[1],
        }))
