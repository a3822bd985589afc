"""A stage's stack created in moto's CloudFormation, and its functions run from
deployment.zip as Lambda runs them: the rehearsal past the template.

    python -m infra.rehearse --stage dev --deployed   # after the offline checks

makes the stack in moto and starts each function from the zip (a cold
start); tests/rehearsal/test_deployed_stack.py goes on to run the contract
through the functions, with events shaped as AWS sends them.

1. AWS is moto's server (ThreadedMotoServer) on a free loopback port, with
   the local stack's mends of its DynamoDB transactions and SQS queues
   (local/moto_transactions.py, local/moto_queues.py) and the gaps below.
2. The artifact goes where the translated template's Lambda Code points, as
   `aws cloudformation package` puts it, and the template beside it: it is
   over CreateStack's 51,200 bytes for a TemplateBody, so it goes by
   TemplateURL, as `aws cloudformation deploy --s3-bucket` sends it.
3. CreateStack with the parameters `make deploy` passes (Stage=<stage>, and
   StripeEventSource when given) and its capabilities; the stack must reach
   CREATE_COMPLETE. What moto cannot create it leaves out: `Stack.skipped`
   names each resource, and the tests assert the list.
4. Each function runs in an interpreter of its own with only what Lambda
   gives it, and AWS-shaped events reach it as Lambda and its pollers
   would hand them (infra/lambda_service.py, infra/lambda_runner.py).

What moto 5.2 gets wrong about this stack is mended in one place,
infra/moto_gaps.py (MotoGaps), and only where the stack needs it.

What only AWS can tell is not told here either: IAM is not evaluated (moto
accepts any credentials, so neither the roles' policies nor the access
bus's Deny is held to), what moto skips is not created (the alarms, the
API's stage, the web ACL, the queue policy; the tables' time to live and
point-in-time recovery are taken and not applied), and no HTTP request
reaches API Gateway: the API's function is handed the proxy event API
Gateway would send, for a route the imported API has.
"""
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TextIO, Tuple

import boto3
import botocore.config
import botocore.exceptions
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from infra.lambda_service import Functions, unpack
from infra.moto_gaps import MotoGaps
from local import moto_queues, moto_transactions

REGION = "us-east-1"
# moto's account when no credentials say otherwise.
ACCOUNT = "123456789012"
ARTIFACT_BUCKET = "rehearsal-artifacts"
# What `make deploy` gives `aws cloudformation deploy`.
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND")
# CreateStack refuses a TemplateBody over this; a TemplateURL may be 1 MB.
TEMPLATE_BODY_LIMIT = 51200
# Lambda refuses a function whose variables set one of these (it sets them)...
RESERVED_VARIABLES = frozenset((
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"))
# ... or whose variables take more than 4 KB, names and values together.
VARIABLES_LIMIT = 4096


class StackFailed(Exception):
    """CloudFormation (moto's) did not take the stack to CREATE_COMPLETE."""


# ------------------------------------------------------------------ AWS

class MotoAWS:
    """moto's server on a free loopback port, mended as the local stack's
    and with MotoGaps, for as long as it runs. Its state is the process's:
    one at a time."""

    def __init__(self, region: str = REGION):
        self.region = region
        self._server: Optional[ThreadedMotoServer] = None
        self._mends = contextlib.ExitStack()
        self.url = ""

    def start(self) -> "MotoAWS":
        for mend in (moto_transactions.installed(), moto_queues.installed(), MotoGaps.installed()):
            self._mends.enter_context(mend)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.url = "http://%s:%d" % self._server.get_host_and_port()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            # Each function moto made holds its own copy of the zip: let them go.
            moto_api_backend.reset()
        self._mends.close()

    def __enter__(self) -> "MotoAWS":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def client(self, service: str, region: Optional[str] = None, credentials: Optional[Dict[str, str]] = None):
        credentials = credentials or {"AccessKeyId": "rehearsal", "SecretAccessKey": "rehearsal"}
        return boto3.client(service, endpoint_url=self.url, region_name=region or self.region,
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials.get("SessionToken"),
                            config=botocore.config.Config(retries={"max_attempts": 1}))

    def credentials_of(self, role_arn: str, session: str) -> Dict[str, str]:
        """The role's session credentials, as Lambda gives a function its role's."""
        found = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session[:64])
        return {k: found["Credentials"][k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}


# ------------------------------------------------------------------ the stack

def condition_holds(template: Dict[str, Any], name: Optional[str], parameters: Dict[str, str]) -> bool:
    """A template condition for these parameters (Fn::Equals, Not, And, Or
    of Refs to parameters and other conditions)."""
    if name is None:
        return True
    declared = template.get("Parameters") or {}

    def value(node: Any) -> str:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return parameters.get(node["Ref"], str((declared.get(node["Ref"]) or {}).get("Default", "")))
        return str(node)

    def holds(node: Dict[str, Any]) -> bool:
        (function, arguments), = node.items()
        if function == "Condition":
            return holds(template["Conditions"][arguments])
        if function == "Fn::Equals":
            return value(arguments[0]) == value(arguments[1])
        if function == "Fn::Not":
            return not holds(arguments[0])
        if function == "Fn::And":
            return all(holds(argument) for argument in arguments)
        if function == "Fn::Or":
            return any(holds(argument) for argument in arguments)
        raise ValueError("condition function %s is not rehearsed" % function)

    return holds({"Condition": name})


@dataclass
class Stack:
    aws: MotoAWS
    name: str
    stage: str
    template: Dict[str, Any]
    parameters: Dict[str, str]
    region: str
    credentials: Optional[Dict[str, str]] = None
    status: str = ""
    outputs: Dict[str, str] = field(default_factory=dict)
    # logical id → (type, physical id), as ListStackResources has them
    resources: Dict[str, Tuple[str, str]] = field(default_factory=dict)

    def client(self, service: str):
        return self.aws.client(service, self.region, self.credentials)

    def read(self) -> "Stack":
        cloudformation = self.client("cloudformation")
        described = cloudformation.describe_stacks(StackName=self.name)["Stacks"][0]
        self.status = described["StackStatus"]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs") or []}
        summaries = cloudformation.list_stack_resources(StackName=self.name)["StackResourceSummaries"]
        self.resources = {s["LogicalResourceId"]: (s["ResourceType"], s.get("PhysicalResourceId"))
                          for s in summaries if s.get("LogicalResourceId")}
        return self

    @property
    def declared(self) -> Dict[str, Dict[str, Any]]:
        """The template's resources whose condition holds for the stack's parameters."""
        return {name: resource for name, resource in self.template["Resources"].items()
                if condition_holds(self.template, resource.get("Condition"), self.parameters)}

    @property
    def left_by_condition(self) -> Dict[str, str]:
        declared = self.declared
        return {name: r["Type"] for name, r in self.template["Resources"].items() if name not in declared}

    @property
    def skipped(self) -> Dict[str, str]:
        """Declared resources moto did not create: logical id → type."""
        return {name: r["Type"] for name, r in self.declared.items() if name not in self.resources}

    def of_type(self, resource_type: str) -> Dict[str, str]:
        """logical id → physical id of what the stack made of a type."""
        return {name: physical for name, (kind, physical) in self.resources.items() if kind == resource_type}

    def physical(self, logical: str) -> str:
        return self.resources[logical][1]

    def function(self, logical: str) -> Dict[str, Any]:
        return self.client("lambda").get_function_configuration(FunctionName=self.physical(logical))

    def mappings(self, logical: str) -> List[Dict[str, Any]]:
        return self.client("lambda").list_event_source_mappings(FunctionName=self.physical(logical))[
            "EventSourceMappings"]

    def schedule_of(self, logical: str) -> Dict[str, Any]:
        """The rule that runs the function on a schedule."""
        events = self.client("events")
        arn = self.function(logical)["FunctionArn"]
        names = events.list_rule_names_by_target(TargetArn=arn)["RuleNames"]
        rules = [events.describe_rule(Name=name) for name in names]
        scheduled = [rule for rule in rules if rule.get("ScheduleExpression")]
        if len(scheduled) != 1:
            raise LookupError("%s has %d scheduled rules" % (logical, len(scheduled)))
        return scheduled[0]

    def api_methods(self, logical: str = "RestAPI") -> Dict[Tuple[str, str], Dict[str, Any]]:
        """(method, resource path) → its integration, as the API has them."""
        apigateway = self.client("apigateway")
        api_id = self.physical(logical)
        methods = {}
        for resource in apigateway.get_resources(restApiId=api_id, limit=500)["items"]:
            for method in resource.get("resourceMethods") or {}:
                integration = apigateway.get_integration(restApiId=api_id, resourceId=resource["id"],
                                                         httpMethod=method)
                methods[(method, resource["path"])] = {k: v for k, v in integration.items()
                                                       if k != "ResponseMetadata"}
        return methods

    def gateway_response(self, response_type: str, logical: str = "RestAPI") -> Dict[str, Any]:
        answer = self.client("apigateway").get_gateway_response(restApiId=self.physical(logical),
                                                                responseType=response_type)
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def upload(aws: MotoAWS, template: Dict[str, Any], zip_path: str, stage: str, region: str,
           credentials: Optional[Dict[str, str]] = None) -> str:
    """The artifact where each function's Code points, and the template
    beside it; the TemplateURL."""
    s3 = aws.client("s3", region, credentials)
    places = {(code["S3Bucket"], code["S3Key"])
              for resource in template["Resources"].values() if resource["Type"] == "AWS::Lambda::Function"
              for code in [resource["Properties"]["Code"]] if "S3Bucket" in code}
    buckets = {bucket for bucket, _ in places} | {ARTIFACT_BUCKET}
    for bucket in buckets:
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            s3.create_bucket(Bucket=bucket)
    for bucket, key in places:
        s3.upload_file(zip_path, bucket, key)
    body = json.dumps(template, indent=2).encode("utf-8")
    key = "stripe-connector/%s/%s.template" % (stage, hashlib.md5(body, usedforsecurity=False).hexdigest())
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=body)
    # The path-style URL `aws cloudformation deploy --s3-bucket` passes.
    return "https://s3.amazonaws.com/%s/%s" % (ARTIFACT_BUCKET, key)


def create_stack(aws: MotoAWS, stage: str, template: Dict[str, Any], zip_path: str,
                 parameters: Optional[Dict[str, str]] = None, stack_name: Optional[str] = None,
                 region: Optional[str] = None, credentials: Optional[Dict[str, str]] = None) -> Stack:
    """The translated template of `stage` created as `make deploy` creates
    it; StackFailed unless it reaches CREATE_COMPLETE."""
    region = region or aws.region
    parameters = dict(parameters or {}, Stage=stage)
    name = stack_name or "stripe-connector-%s" % stage
    url = upload(aws, template, zip_path, stage, region, credentials)
    stack = Stack(aws, name, stage, template, parameters, region, credentials)
    cloudformation = stack.client("cloudformation")
    try:
        cloudformation.create_stack(StackName=name, TemplateURL=url, Capabilities=list(CAPABILITIES),
                                    Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                                for k, v in sorted(parameters.items())])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise StackFailed("CreateStack %s: %s" % (name, exc)) from exc
    for _ in range(100):
        stack.read()
        if not stack.status.endswith("_IN_PROGRESS"):
            break
        time.sleep(0.1)
    if stack.status != "CREATE_COMPLETE":
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
        failed = ["%s %s: %s" % (e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason"))
                  for e in events if e["ResourceStatus"].endswith("FAILED")]
        raise StackFailed("%s is %s: %s" % (name, stack.status, "; ".join(failed) or "no reason given"))
    return stack


def lambda_refusals(configuration: Dict[str, Any]) -> List[str]:
    """What Lambda would refuse of a function's configuration that moto takes."""
    variables = (configuration.get("Environment") or {}).get("Variables") or {}
    refusals = ["sets the reserved variable %s" % name for name in sorted(RESERVED_VARIABLES & set(variables))]
    size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in variables.items())
    if size > VARIABLES_LIMIT:
        refusals.append("its variables take %d bytes, over Lambda's %d" % (size, VARIABLES_LIMIT))
    if len(configuration["FunctionName"]) > 64:
        refusals.append("its name has %d characters, over Lambda's 64" % len(configuration["FunctionName"]))
    return refusals


def mapping_refusals(stack: Stack, logical: str) -> List[str]:
    """What Lambda would refuse of the function's queue mappings that moto takes."""
    configuration = stack.function(logical)
    sqs = stack.client("sqs")
    refusals = []
    for mapping in stack.mappings(logical):
        if ":sqs:" not in mapping["EventSourceArn"]:
            continue
        url = sqs.get_queue_url(QueueName=mapping["EventSourceArn"].rsplit(":", 1)[1])["QueueUrl"]
        visibility = int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
            "Attributes"]["VisibilityTimeout"])
        if visibility < configuration["Timeout"]:
            # Lambda's words, at CreateEventSourceMapping.
            refusals.append("Queue visibility timeout: %d seconds is less than Function timeout: %d seconds"
                            % (visibility, configuration["Timeout"]))
    return refusals


# ------------------------------------------------------------------ the command

def rehearse_deployed(stage: str, template: Dict[str, Any], packaged_dir: str, out: TextIO,
                      region: str = REGION, parameters: Optional[Dict[str, str]] = None) -> int:
    """`python -m infra.rehearse --deployed`: the stack created in moto and
    each function's cold start from the zip; 0 when both hold."""
    zip_path = os.path.join(packaged_dir, "deployment.zip")
    scratch = tempfile.mkdtemp(prefix="rehearsal-")
    # The report says what moto skipped; its own words for it, and a line
    # per request, would bury the report.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
    try:
        with MotoAWS(region) as aws:
            try:
                stack = create_stack(aws, stage, template, zip_path, parameters)
            except StackFailed as exc:
                print("  FAIL stack: %s" % exc, file=out)
                return 1
            print("  ok   stack: %s %s in moto, %d resources" % (stack.name, stack.status, len(stack.resources)),
                  file=out)
            for kind in sorted(set(stack.skipped.values())):
                names = sorted(name for name, of in stack.skipped.items() if of == kind)
                print("  note stack: moto does not create %s: %s" % (kind, ", ".join(names)), file=out)
            functions = Functions(stack, unpack(zip_path, scratch))
            failures = 0
            try:
                functions.start(*sorted(stack.of_type("AWS::Lambda::Function")))
                for logical in sorted(stack.of_type("AWS::Lambda::Function")):
                    problems = lambda_refusals(stack.function(logical)) + mapping_refusals(stack, logical)
                    error = functions[logical].init["error"]
                    if error:
                        problems.append("%s: %s" % (error["errorType"], error["errorMessage"]))
                    failures += bool(problems)
                    print("  %s %s: %s" % ("FAIL" if problems else "ok  ", logical, "; ".join(problems)
                                           or "starts from the zip alone (%.2f s)" % functions[logical].init[
                                               "seconds"]), file=out)
            finally:
                functions.close()
            return 1 if failures else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


