"""The functions' IAM policies, held to what the code does while the tests
run: every AWS call made under one of app.py's functions (a route: the API's
function; announce_access, expire_access, catch_up, sync_worker,
stripe_events) is checked, by a botocore hook, against what that function's
policy file allows, as IAM would check it in AWS. A call no policy statement allows is recorded, and
fails the test that made it (tests/conftest.py): a policy too narrow fails
here rather than in production.

Calls outside app.py's functions (fixtures, the local stand-ins of Lambda's
triggers) are the tests' own and are not checked. What Lambda does with a
function's role outside its code (reading the stream and the queues,
sending to the stream's failure queue) is checked by tests/infra/test_policies.py."""
import os
import sys
import threading
from typing import Any, Dict, List, Optional, Set, Tuple

import botocore.handlers

import app as app_module
from infra.project import stage_environment
from tests import infra_map

APP_FILE = app_module.__file__
# app.py's functions that are not the API's (Chalice names them as in app.py).
OWN_FUNCTIONS = frozenset(infra_map.FUNCTIONS) - {infra_map.API}

# Operations whose IAM action has another name.
ACTIONS = {
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}
IAM_PREFIX = {"dynamodb": "dynamodb", "dynamodb-streams": "dynamodb", "sqs": "sqs", "ssm": "ssm",
              "eventbridge": "events"}
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def calling_function() -> Optional[str]:
    """The app.py function this call is made under, if any."""
    frame = sys._getframe()
    names = set()
    while frame is not None:
        if frame.f_code.co_filename == APP_FILE:
            names.add(frame.f_code.co_name)
        frame = frame.f_back
    own = names & OWN_FUNCTIONS
    if own:
        return own.pop()
    return infra_map.API if names else None


class IamCheck:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.denied: List[str] = []
        self._policies = {function: infra_map.policy(function) for function in infra_map.FUNCTIONS}
        # Worked out before any test: it binds the models for a moment.
        self._tables = infra_map.model_tables()
        self._queues = infra_map.queue_resources(infra_map.STAGE)
        self._access_bus = stage_environment(infra_map.STAGE)["ACCESS_EVENT_BUS"]

    def __call__(self, event_name: str, params: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        # event_name is "before-parameter-build.<service>.<Operation>"
        _, service, operation = event_name.split(".", 2)
        function = calling_function()
        if function is None:
            return
        for action, resource in self.needs(service, operation, params or {}):
            if not self._policies[function].allows(action, resource):
                with self._lock:
                    self.denied.append("%s may not %s on %s" % (function, action, resource))

    def needs(self, service: str, operation: str, params: Dict[str, Any]) -> Set[Tuple[str, infra_map.Resource]]:
        """What IAM asks of the caller's role for this call."""
        action = ACTIONS.get((service, operation), "%s:%s" % (IAM_PREFIX.get(service, service), operation))
        if service == "dynamodb":
            if operation == "TransactWriteItems" or operation == "TransactGetItems":
                return {("dynamodb:" + TRANSACT_ACTIONS[kind], self.table(request["TableName"]))
                        for item in params.get("TransactItems") or [] for kind, request in item.items()}
            if operation in ("BatchGetItem", "BatchWriteItem"):
                return {(action, self.table(name)) for name in params.get("RequestItems") or {}}
            if params.get("IndexName"):
                return {(action, ("index",) + self.table(params["TableName"])[1:] + (params["IndexName"],))}
            if "TableName" in params:
                return {(action, self.table(params["TableName"]))}
        if service == "sqs":
            name = params.get("QueueName") or str(params.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
            return {(action, self.queue(name))}
        if service == "eventbridge" and operation == "PutEvents":
            return {(action, self.bus(entry.get("EventBusName") or "default")) for entry in params.get("Entries") or []}
        if service == "ssm" and "Name" in params:
            return {(action, ("parameter", params["Name"]))}
        return {(action, ("unknown", service, operation))}

    def table(self, name: str) -> infra_map.Resource:
        # The models are bound to whatever tables the test uses: a model's
        # table is the template's table of that model.
        for model, logical in self._tables.items():
            if model.Meta.table_name == name:
                return ("table", logical)
        return ("table", "not in the template: " + name)

    def bus(self, name: str) -> infra_map.Resource:
        # A name or an ARN. The bus ACCESS_EVENT_BUS names where the test runs
        # (the default bus when unset, as settings read it) stands in for the
        # stage's own access bus, as the tests' tables for the template's;
        # a put on any other bus is checked as what it is.
        if name.startswith("arn:"):
            name = name.split(":event-bus/", 1)[-1]
        if name == os.environ.get("ACCESS_EVENT_BUS", "default"):
            return ("bus", self._access_bus)
        return ("bus", name)

    def queue(self, name: str) -> infra_map.Resource:
        return ("queue", self._queues.get(name, "not in the template: " + name))

    def take_denied(self) -> List[str]:
        with self._lock:
            denied, self.denied = sorted(set(self.denied)), []
        return denied


IAM_CHECK = IamCheck()
botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", IAM_CHECK))
