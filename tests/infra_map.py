"""How the code's names meet the template's: which of the template's tables
each PynamoDB model is, and what each function's IAM policy grants, in the
template's own terms (logical ids, index names). The drift and policy tests
and the IAM check on every AWS call (tests/iam_check.py) share it."""
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Tuple, Type

from pynamodb.models import Model

from chalicelib import models
from chalicelib.settings import load_settings
from infra.project import load_template, policy_path, stage_environment, substitute

# The functions of app.py, by the names Chalice gives them.
API = "api_handler"
FUNCTIONS = (API, "announce_access", "expire_access", "catch_up", "sync_worker", "stripe_events",
             "watch_webhook_endpoint")
# Any stage: the logical ids and index names are the same in each.
STAGE = "dev"
# Each function's logical id in the packaged template (`chalice package`):
# CloudFormation names the function `<stack>-<logical id>-<suffix>`, and
# Lambda logs it to /aws/lambda/<that name>.
LOGICAL_IDS = {API: "APIHandler", "announce_access": "AnnounceAccess", "expire_access": "ExpireAccess",
               "catch_up": "CatchUp", "sync_worker": "SyncWorker", "stripe_events": "StripeEvents",
               "watch_webhook_endpoint": "WatchWebhookEndpoint"}


@functools.lru_cache(maxsize=1)
def template() -> Dict[str, Any]:
    return load_template()


def resources_of_type(kind: str) -> Dict[str, Dict[str, Any]]:
    return {name: r for name, r in template()["Resources"].items() if r.get("Type") == kind}


def table_settings() -> Dict[str, Type[Model]]:
    """The environment variable naming each model's table, as models.bind
    reads it: each is given a name of its own and the models are bound to
    them (and put back as they were)."""
    environment = {name: "table-named-by-" + name for name in stage_environment(STAGE) if name.endswith("_TABLE")}
    environment.update({"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_CLIENT_ID": "ca_x",
                        "STRIPE_WEBHOOK_SECRET": "whsec_x", "AUTH_JWT_SECRET": "x" * 32,
                        "APP_BASE_URL": "https://app.example", "OAUTH_REDIRECT_URI": "https://api.example/callback"})
    saved = {model: (model.Meta.table_name, getattr(model.Meta, "region", None), getattr(model.Meta, "host", None),
                     model._connection) for model in models.MODELS}
    try:
        models.bind(load_settings(environment))
        named = {model: model.Meta.table_name for model in models.MODELS}
    finally:
        for model, (table_name, region, host, connection) in saved.items():
            model.Meta.table_name, model.Meta.region, model.Meta.host = table_name, region, host
            model._connection = connection
    by_variable = {value: name for name, value in environment.items()}
    return {by_variable[table_name]: model for model, table_name in named.items() if table_name in by_variable}


def table_resources(stage: str) -> Dict[str, str]:
    """The template's table of each table name of a stage: TableName → logical id."""
    return {substitute(r["Properties"]["TableName"], {"Stage": stage}): name
            for name, r in resources_of_type("AWS::DynamoDB::Table").items()}


def model_tables() -> Dict[Type[Model], str]:
    """Each model's table in the template, by logical id."""
    environment = stage_environment(STAGE)
    tables = table_resources(STAGE)
    return {model: tables[environment[variable]] for variable, model in table_settings().items()
            if environment.get(variable) in tables}


def queue_resources(stage: str) -> Dict[str, str]:
    """QueueName → logical id."""
    return {substitute(r["Properties"]["QueueName"], {"Stage": stage}): name
            for name, r in resources_of_type("AWS::SQS::Queue").items()}


def bus_resources(stage: str) -> Dict[str, str]:
    """Name → logical id of the buses the template names itself (the
    partner event source's bus is named by a parameter)."""
    named = {name: substitute(r["Properties"]["Name"], {"Stage": stage})
             for name, r in resources_of_type("AWS::Events::EventBus").items()}
    return {bus: name for name, bus in named.items() if isinstance(bus, str)}


# What a policy grants, in the template's terms: (action, resource), where a
# resource is ("table", id), ("index", id, index), ("stream", id),
# ("streams", id), ("queue", id), ("parameter", path with ${Stage}),
# ("bus", name with ${Stage}), ("log-group", the function's logical id) for the log group
# of that function of the stack, or ("*",) for any.
Resource = Tuple[str, ...]
Grant = Tuple[str, Resource]

_INDEX = re.compile(r"^\$\{(\w+)\.Arn\}/index/([\w.-]+)$")
_STREAMS = re.compile(r"^\$\{(\w+)\.Arn\}/stream/\*$")
_ARN = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:"
_LOG_GROUP = re.compile(r"^" + re.escape(_ARN % "logs") + r"log-group:/aws/lambda/\$\{AWS::StackName\}-(\w+)-\*$")


def resource_of(value: Any) -> Resource:
    """A policy's Resource entry in the template's terms; ValueError for a
    form the policies do not use."""
    if value == "*":
        return ("*",)
    if isinstance(value, str) and value.startswith("arn:aws:logs:"):
        return ("logs", value)
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        logical, attribute = value["Fn::GetAtt"]
        kind = template()["Resources"][logical]["Type"]
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return ("table", logical)
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            return ("stream", logical)
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return ("queue", logical)
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        text = value["Fn::Sub"]
        for pattern, kind in ((_INDEX, "index"), (_STREAMS, "streams")):
            found = pattern.match(text)
            if found:
                return (kind,) + found.groups()
        if text.startswith(_ARN % "ssm" + "parameter/"):
            return ("parameter", text[len(_ARN % "ssm" + "parameter"):])
        if text.startswith(_ARN % "events" + "event-bus/"):
            return ("bus", text[len(_ARN % "events" + "event-bus/"):])
        found = _LOG_GROUP.match(text)
        if found:
            return ("log-group", found.group(1))
    raise ValueError("A policy resource in a form the policies do not use: %r" % (value,))


@dataclass(frozen=True)
class Policy:
    function: str
    document: Dict[str, Any]

    @property
    def statements(self) -> List[Dict[str, Any]]:
        return self.document["Statement"]

    @functools.cached_property
    def grants(self) -> FrozenSet[Grant]:
        found = set()
        for statement in self.statements:
            if statement.get("Effect") != "Allow" or "Condition" in statement:
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            places = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            found.update((action, resource_of(place)) for action in actions for place in places)
        return frozenset(found)

    @functools.cached_property
    def _places(self) -> Dict[str, FrozenSet[Resource]]:
        places: Dict[str, set] = {}
        for action, place in self.grants:
            places.setdefault(action, set()).add(place)
        return {action: frozenset(found) for action, found in places.items()}

    def allows(self, action: str, resource: Resource) -> bool:
        places = self._places.get(action, frozenset())
        if ("*",) in places or resource in places:
            return True
        if resource[0] in ("parameter", "bus"):
            for place in places:
                if place[0] == resource[0]:
                    pattern = "^" + re.escape(place[1]).replace(re.escape("${Stage}"), "[^/]+") + "$"
                    if re.match(pattern, resource[1]):
                        return True
        return False


def policy(function: str) -> Policy:
    with open(policy_path(function)) as f:
        return Policy(function, json.load(f))
