"""A stage's stack as CloudFormation would receive it, checked offline: the
last step before `make deploy`.

    make rehearse STAGE=prod      # packages build/prod, then runs:
    python -m infra.rehearse --stage prod [build/prod] [--allow-placeholders]

`make lint` lints build/<stage>/sam.yaml, which is still a SAM template:
cfn-lint (since 1.54) validates SAM resources against schemas of its own and
no longer expands them, so whatever SAM's transform makes (the API's stages
and deployment, the functions' event source mappings, schedule rules and
permissions) goes unlinted. Here the packaged template goes through what
`make deploy` puts it through, without an AWS account:

1. the artifact: each function's CodeUri is a zip that holds its handler
   (module and name), and is then named by an S3 URI as `aws cloudformation
   package` would name it;
2. SAM's transform, by aws-sam-translator (the library CloudFormation's
   transform runs), for the stage's parameters in a region of our choosing;
3. cfn-lint on the CloudFormation that comes out (build/<stage>/cloudformation.json);
4. what neither would call a mistake: one API Gateway stage, the one the
   stage's config names, with infra/template.yaml's throttling, access log and
   metrics, and the API alarms watching it; every function with the stage's
   settings from .chalice/config.json; every schedule a valid expression;
   no Ref, GetAtt, Sub, DependsOn or Condition naming what is not there;
   no placeholder (`REPLACE`, `placeholder` in any case, or `…`) left in a value.

A placeholder holds back `prod` and is a note elsewhere (dev is where the
stack is tried before its values are final). Prod's config holds
`ca_REPLACE_WITH_LIVE_CONNECT_CLIENT_ID` until someone with the live
platform's Connect settings writes the real ID there, and a stack deployed
with it could connect no Stripe account; so `make rehearse STAGE=prod`
fails, naming each value, where to set it and what it should be, until
they are set. `ALLOW_PLACEHOLDERS=1` (`--allow-placeholders`) makes
them notes, to rehearse the rest of prod before the live values are known.
`make test` stays green either way: its test asserts that the rehearsal
reports exactly the placeholders prod's config holds, whichever they are.

What only AWS can tell stays untold: whether CloudFormation creates what
passes here (a service's refusal, a limit of the account, a name taken), and
whether the real transform, run later by CloudFormation at its own version,
makes the same resources as the pinned translator.

Exit status: 0 when nothing holds the stage back, 1 when a finding does,
2 for a stage or a packaged directory that is not there.
"""
import argparse
import ast
import copy
import dataclasses
import hashlib
import json
import os
import re
import sys
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import boto3
from chalice.config import Config
from chalice.utils import to_cfn_resource_name
from cfnlint import ManualArgs
from cfnlint.api import lint as cfn_lint
from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

from chalicelib.settings import is_placeholder
from infra.package import package as package_stage
from infra.project import ROOT, chalice_config, load_template, stages, substitute

# Chalice wants a region only to name the partition, as in the Makefile's
# package; SAM's transform and cfn-lint take the same one.
REGION = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
# Where `aws cloudformation package` would put the artifact; never asked.
ARTIFACT_BUCKET = "rehearsal-artifacts"
# Stages a placeholder holds back; elsewhere it is a note.
PLACEHOLDERS_BLOCK = ("prod",)
# What each setting a deployer must write is, when a placeholder holds it.
TO_SET = {
    "STRIPE_CLIENT_ID": "the platform's Connect client ID (ca_…, Stripe Dashboard → Settings → Connect;"
                        " live mode for prod, test mode for dev)",
    "APP_BASE_URL": "CustomerHub's https origin for the stage",
    "OAUTH_REDIRECT_URI": "the redirect URI registered in Stripe's Connect settings",
}
PSEUDO_PARAMETERS = frozenset({"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
                               "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"})
RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
CRON_FIELD = re.compile(r"[0-9A-Za-z*?,/#\-]+")

# The checks, in the order the report lists them.
ARTIFACT, TRANSLATE, LINT, API_STAGE, FUNCTIONS, SCHEDULES, REFERENCES, PLACEHOLDERS = (
    "artifact", "SAM transform", "cfn-lint", "API stage", "function settings", "schedules", "references",
    "placeholders")
CHECKS = (ARTIFACT, TRANSLATE, LINT, API_STAGE, FUNCTIONS, SCHEDULES, REFERENCES, PLACEHOLDERS)


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str
    where: str  # a path in the template, Resources/<id>/…, or a file
    message: str
    blocking: bool = True

    def __str__(self) -> str:
        return "%s: %s" % (self.where, self.message)


@dataclasses.dataclass
class Rehearsal:
    stage: str
    region: str
    findings: List[Finding]
    template: Optional[Dict[str, Any]]  # the translated CloudFormation; None when the transform refused
    template_text: str = ""  # what cfn-lint read; its line numbers are the findings'

    @property
    def blocking(self) -> List[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def ready(self) -> bool:
        return not self.blocking

    def of(self, check: str) -> List[Finding]:
        return [f for f in self.findings if f.check == check]

    def report(self) -> str:
        lines = []
        for check in CHECKS:
            found = self.of(check)
            if self.template is None and check not in (ARTIFACT, TRANSLATE):
                lines.append("  --   %s: not run, the transform refused the template" % check)
                continue
            if not found:
                lines.append("  ok   %s" % check)
            for finding in found:
                lines.append("  %s %s: %s" % ("FAIL" if finding.blocking else "note", check, finding))
        verdict = ("%s passes the rehearsal" % self.stage if self.ready else
                   "%s fails the rehearsal: %d finding(s) hold it back" % (self.stage, len(self.blocking)))
        return "\n".join(lines + [verdict])


# ------------------------------------------------------------------ package

def package(stage: str, out_dir: str, region: str = REGION) -> str:
    """build/<stage> as `make package` makes it (infra/package.py); the path of sam.yaml."""
    return package_stage(stage, out_dir, region)


def load_packaged(packaged_dir: str) -> Dict[str, Any]:
    return load_template(os.path.join(packaged_dir, "sam.yaml"))


# ------------------------------------------------------------------ rehearse

def rehearse(sam: Dict[str, Any], stage: str, packaged_dir: str, region: str = REGION,
             allow_placeholders: bool = False, config: Optional[Dict[str, Any]] = None) -> Rehearsal:
    """The packaged template `sam` of `stage` (its artifacts in packaged_dir),
    transformed, linted and checked."""
    config = config if config is not None else chalice_config()
    findings = check_artifacts(sam, packaged_dir)
    try:
        template = translate(for_upload(sam, stage, packaged_dir), stage, region)
    except InvalidDocumentException as exc:
        findings += [_refusal(cause.message) for cause in exc.causes]
        return Rehearsal(stage, region, findings, None)
    text = json.dumps(template, indent=2)
    findings += lint(text, region)
    findings += check_api_stage(template, stage, config)
    findings += check_functions(template, stage, config)
    findings += check_schedules(template)
    findings += check_references(template)
    findings += check_placeholders(template, stage, config,
                                   blocking=stage in PLACEHOLDERS_BLOCK and not allow_placeholders)
    return Rehearsal(stage, region, findings, template, text)


REFUSED_RESOURCE = re.compile(r"Resource with id \[([^\]]+)\] is invalid\. (.*)", re.S)


def _refusal(message: str) -> Finding:
    resource = REFUSED_RESOURCE.match(message)
    if resource:
        return Finding(TRANSLATE, _resource_path(resource.group(1)), resource.group(2))
    return Finding(TRANSLATE, _resource_path(None), message)


def serverless_functions(sam: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {name: r for name, r in sam.get("Resources", {}).items() if r.get("Type") == "AWS::Serverless::Function"}


def _resource_path(logical_id: Optional[str], *rest: Any) -> str:
    if logical_id is None:
        return "the template"
    return "/".join(["Resources", logical_id] + [str(part) for part in rest])


def check_artifacts(sam: Dict[str, Any], packaged_dir: str) -> List[Finding]:
    """Each function's CodeUri is a zip in packaged_dir holding its handler."""
    findings = []
    for name, resource in serverless_functions(sam).items():
        properties = resource.get("Properties", {})
        code_uri = properties.get("CodeUri")
        if code_uri is None:
            findings.append(Finding(ARTIFACT, _resource_path(name, "Properties"),
                                    "no CodeUri: `aws cloudformation package` would upload %s itself" % packaged_dir))
            continue
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            continue  # already uploaded: nothing here to look into
        path = os.path.normpath(os.path.join(packaged_dir, code_uri))
        if not zipfile.is_zipfile(path):
            findings.append(Finding(ARTIFACT, _resource_path(name, "Properties", "CodeUri"),
                                    "%s is not a zip in %s" % (code_uri, packaged_dir)))
            continue
        handler = properties.get("Handler")
        problem = _missing_handler(path, handler) if isinstance(handler, str) else "no Handler"
        if problem:
            findings.append(Finding(ARTIFACT, _resource_path(name, "Properties", "Handler"), problem))
    return findings


def _missing_handler(zip_path: str, handler: str) -> Optional[str]:
    module, _, attribute = handler.rpartition(".")
    if not module or not attribute:
        return "%r is not module.name" % handler
    names = _module_names(zip_path, module)
    if names is None:
        return "%s has no module %s (for %s)" % (os.path.basename(zip_path), module, handler)
    if attribute not in names:
        return "%s defines no %s at its top level (for %s)" % (module, attribute, handler)
    return None


_MODULES: Dict[Tuple[str, float, str], Optional[frozenset]] = {}


def _module_names(zip_path: str, module: str) -> Optional[frozenset]:
    """The names a module in the zip binds at its top level, read (not run)."""
    key = (zip_path, os.path.getmtime(zip_path), module)
    if key not in _MODULES:
        stem = module.replace(".", "/")
        with zipfile.ZipFile(zip_path) as archive:
            present = set(archive.namelist())
            source = next((archive.read(p) for p in (stem + ".py", stem + "/__init__.py") if p in present), None)
        _MODULES[key] = None if source is None else frozenset(_top_level_names(ast.parse(source)))
    return _MODULES[key]


def _top_level_names(tree: ast.Module) -> Iterator[str]:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        yield leaf.id
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield (alias.asname or alias.name).split(".")[0]


def for_upload(sam: Dict[str, Any], stage: str, packaged_dir: str) -> Dict[str, Any]:
    """The template as `aws cloudformation package` hands it on: each local
    CodeUri an S3 URI (the transform takes no other)."""
    uploaded = copy.deepcopy(sam)
    for resource in serverless_functions(uploaded).values():
        properties = resource.get("Properties", {})
        code_uri = properties.get("CodeUri")
        if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
            path = os.path.join(packaged_dir, code_uri)
            digest = _md5(path) if os.path.isfile(path) else "missing"
            properties["CodeUri"] = "s3://%s/stripe-connector/%s/%s" % (ARTIFACT_BUCKET, stage, digest)
    return uploaded


def _md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def translate(sam: Dict[str, Any], stage: str, region: str = REGION) -> Dict[str, Any]:
    """SAM's transform, as transform.transform runs it, in `region` with no
    account. The functions name their own roles (Chalice's), so no managed
    policy is looked up by name: the map is empty, and a policy named by name
    would fail the transform here instead of asking IAM."""
    template = copy.deepcopy(sam)
    parameters = {"Stage": stage}
    to_py27_compatible_template(template, parameters)
    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region), metrics=metrics)
    try:
        translated = translator.translate(template, parameter_values=parameters, get_managed_policy_map=dict)
    finally:
        metrics.publish()  # to nowhere: only so that it does not warn of unpublished metrics
    return undo_mark_unicode_str_in_template(translated)


def lint(text: str, region: str = REGION) -> List[Finding]:
    findings = []
    for match in cfn_lint(text, config=ManualArgs(regions=[region])):
        path = getattr(match, "path", None)
        where = "/".join(str(p) for p in path) if path else "cloudformation.json:%d" % match.linenumber
        findings.append(Finding(LINT, where, "%s %s (cloudformation.json:%d)"
                                % (match.rule.id, match.message, match.linenumber)))
    return findings


def resources_of_type(template: Dict[str, Any], kind: str) -> Dict[str, Dict[str, Any]]:
    return {name: r for name, r in template.get("Resources", {}).items() if r.get("Type") == kind}


def api_stages(template: Dict[str, Any]) -> List[Tuple[str, str]]:
    """Every API Gateway stage the template makes, (name, the resource making
    it): a Stage resource, or a Deployment through its StageName."""
    made = [(r["Properties"].get("StageName"), name)
            for name, r in resources_of_type(template, "AWS::ApiGateway::Stage").items()]
    made += [(r["Properties"]["StageName"], name)
             for name, r in resources_of_type(template, "AWS::ApiGateway::Deployment").items()
             if "StageName" in r.get("Properties", {})]
    return sorted(made, key=lambda pair: str(pair[0]))


def check_api_stage(template: Dict[str, Any], stage: str, config: Dict[str, Any]) -> List[Finding]:
    """One stage, the config's, with the throttling, access log and metrics
    infra/template.yaml gives the API; the API alarms watch that stage."""
    expected = Config(chalice_stage=stage, config_from_disk=config).api_gateway_stage
    made = api_stages(template)
    findings = []
    for name, resource in made:
        if name != expected:
            findings.append(Finding(API_STAGE, _resource_path(resource),
                                    "makes a stage %r beside %r, without its throttling, access log or metrics"
                                    " (SAM's `Stage` unless Globals.Api.OpenApiVersion is set)" % (name, expected)))
    stage_resources = {name: resource for name, resource in made if name == expected
                       and template["Resources"][resource]["Type"] == "AWS::ApiGateway::Stage"}
    if not stage_resources:
        return findings + [Finding(API_STAGE, "Resources", "no AWS::ApiGateway::Stage named %r" % expected)]
    wanted = load_template()["Resources"]["RestAPI"]["Properties"]
    stage_properties = template["Resources"][stage_resources[expected]]["Properties"]
    for key in ("MethodSettings", "AccessLogSetting"):
        if stage_properties.get(key) != wanted.get(key):
            findings.append(Finding(API_STAGE, _resource_path(stage_resources[expected], "Properties", key),
                                    "is not infra/template.yaml's RestAPI %s" % key))
    settings = stage_properties.get("MethodSettings") or []
    if not any(s.get("ResourcePath") == "/*" and s.get("HttpMethod") == "*" and "ThrottlingRateLimit" in s
               and "ThrottlingBurstLimit" in s for s in settings):
        findings.append(Finding(API_STAGE, _resource_path(stage_resources[expected], "Properties", "MethodSettings"),
                                "no throttling for every method (/*, *)"))
    if not (stage_properties.get("AccessLogSetting") or {}).get("DestinationArn"):
        findings.append(Finding(API_STAGE, _resource_path(stage_resources[expected], "Properties"), "no access log"))
    findings += _api_alarms(template, stage, expected)
    return findings


def _api_alarms(template: Dict[str, Any], stage: str, stage_name: str) -> List[Finding]:
    api_names = {substitute(r["Properties"].get("Name"), {"Stage": stage})
                 for r in resources_of_type(template, "AWS::ApiGateway::RestApi").values()}
    findings = []
    for name, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        properties = alarm.get("Properties", {})
        if properties.get("Namespace") != "AWS/ApiGateway":
            continue
        dimensions = {d["Name"]: substitute(d["Value"], {"Stage": stage}) for d in properties.get("Dimensions", [])}
        if "Stage" in dimensions and dimensions["Stage"] != stage_name:
            findings.append(Finding(API_STAGE, _resource_path(name, "Properties", "Dimensions"),
                                    "watches stage %r, not %r" % (dimensions["Stage"], stage_name)))
        if "ApiName" in dimensions and dimensions["ApiName"] not in api_names:
            findings.append(Finding(API_STAGE, _resource_path(name, "Properties", "Dimensions"),
                                    "watches API %r, not one of %s" % (dimensions["ApiName"], sorted(map(str, api_names)))))
    return findings


def chalice_logical_id(name: str) -> str:
    """The logical id Chalice's package gives a function of the config."""
    return "APIHandler" if name == "api_handler" else to_cfn_resource_name(name)


def chalice_functions(template: Dict[str, Any], config: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """Chalice's name of each function → its logical id in the template (None
    when it is not there): those the config names, and any other function
    Chalice tagged, named by its handler."""
    functions = resources_of_type(template, "AWS::Lambda::Function")
    found: Dict[str, Optional[str]] = {
        name: chalice_logical_id(name) if chalice_logical_id(name) in functions else None
        for name in config.get("lambda_functions") or {}}
    for logical, resource in functions.items():
        properties = resource.get("Properties", {})
        tagged = any(tag.get("Key") == "aws-chalice" for tag in properties.get("Tags") or [])
        handler = properties.get("Handler")
        if tagged and logical not in found.values() and isinstance(handler, str):
            name = handler.rpartition(".")[2]
            found["api_handler" if name == "app" else name] = logical
    return found


def check_functions(template: Dict[str, Any], stage: str, config: Dict[str, Any]) -> List[Finding]:
    """Each function has the stage's environment, timeout and memory as
    Chalice resolves them from .chalice/config.json (after the merge and
    SAM's Globals, which could change them)."""
    findings = []
    for name, logical in sorted(chalice_functions(template, config).items()):
        if logical is None:
            findings.append(Finding(FUNCTIONS, _resource_path(chalice_logical_id(name)),
                                    "no function for %s (.chalice/config.json)" % name))
            continue
        properties = template["Resources"][logical].get("Properties", {})
        settings = Config(chalice_stage=stage, function_name=name, config_from_disk=config)
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        for variable, value in sorted(settings.environment_variables.items()):
            if variables.get(variable) != value:
                findings.append(Finding(FUNCTIONS, _resource_path(logical, "Properties", "Environment", "Variables",
                                                                  variable),
                                        "is %r, the config's %s is %r" % (variables.get(variable), stage, value)))
        for key, wanted in (("Timeout", settings.lambda_timeout), ("MemorySize", settings.lambda_memory_size)):
            if wanted is not None and properties.get(key) != wanted:
                findings.append(Finding(FUNCTIONS, _resource_path(logical, "Properties", key),
                                        "is %r, the config's %s is %r" % (properties.get(key), stage, wanted)))
    return findings


def schedule_problem(expression: Any) -> Optional[str]:
    """What is wrong with an EventBridge schedule expression, or None."""
    if not isinstance(expression, str):
        return "%r is not a literal expression" % (expression,)
    rate = RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            return "%s: a rate is at least 1" % expression
        if (value == 1) != (not unit.endswith("s")):
            return "%s: the unit is singular for 1 and plural otherwise" % expression
        return None
    if expression.startswith("cron(") and expression.endswith(")"):
        fields = expression[5:-1].split()
        if len(fields) != 6:
            return "%s: a cron has 6 fields (minutes hours day-of-month month day-of-week year)" % expression
        if not all(CRON_FIELD.fullmatch(f) for f in fields):
            return "%s: a field is not cron's" % expression
        if "?" not in (fields[2], fields[4]):
            return "%s: day-of-month or day-of-week must be ?" % expression
        return None
    return "%r is neither rate(…) nor cron(…)" % expression


def check_schedules(template: Dict[str, Any]) -> List[Finding]:
    findings = []
    for name, rule in resources_of_type(template, "AWS::Events::Rule").items():
        properties = rule.get("Properties", {})
        if "ScheduleExpression" in properties:
            problem = schedule_problem(properties["ScheduleExpression"])
            if problem:
                findings.append(Finding(SCHEDULES, _resource_path(name, "Properties", "ScheduleExpression"), problem))
    return findings


SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def check_references(template: Dict[str, Any]) -> List[Finding]:
    """Ref, GetAtt, Sub, DependsOn and Condition name what the template has."""
    resources = set(template.get("Resources", {}))
    names = resources | set(template.get("Parameters", {})) | PSEUDO_PARAMETERS
    conditions = set(template.get("Conditions", {}))
    findings = []

    def dangling(path: str, message: str) -> None:
        findings.append(Finding(REFERENCES, path, message))

    def sub_variables(text: str) -> Iterator[str]:
        for variable in SUB_VARIABLE.findall(text):
            if not variable.startswith("!"):  # ${!Literal} is text
                yield variable

    def visit(node: Any, path: Tuple[str, ...]) -> None:
        where = "/".join(path)
        if isinstance(node, dict):
            if len(node) == 1:
                (key, value), = node.items()
                if key == "Ref" and isinstance(value, str) and value not in names:
                    dangling(where, "Ref to %s, which the template does not have" % value)
                elif key == "Fn::GetAtt":
                    target = value.split(".", 1)[0] if isinstance(value, str) else (value or [None])[0]
                    if isinstance(target, str) and target not in resources:
                        dangling(where, "GetAtt of %s, which the template does not have" % target)
                elif key == "Fn::Sub":
                    text, local = (value, {}) if isinstance(value, str) else (value[0], value[1] if len(value) > 1 else {})
                    for variable in sub_variables(text) if isinstance(text, str) else ():
                        head = variable if variable in names else variable.split(".", 1)[0]
                        if variable not in local and head not in names:
                            dangling(where, "Sub of ${%s}, which the template does not have" % variable)
                elif key == "Fn::If" and isinstance(value, list) and value and value[0] not in conditions:
                    dangling(where, "If on condition %s, which the template does not have" % value[0])
                elif key == "Condition" and path[:1] == ("Conditions",) and value not in conditions:
                    dangling(where, "condition %s, which the template does not have" % value)
            for key, value in node.items():
                visit(value, path + (str(key),))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                visit(value, path + (str(index),))

    for name, resource in template.get("Resources", {}).items():
        depends = resource.get("DependsOn", [])
        for target in [depends] if isinstance(depends, str) else depends:
            if target not in resources:
                dangling(_resource_path(name, "DependsOn"), "on %s, which the template does not have" % target)
        if "Condition" in resource and resource["Condition"] not in conditions:
            dangling(_resource_path(name, "Condition"), "%s is not a condition of the template" % resource["Condition"])
    for section in ("Conditions", "Resources", "Outputs"):
        visit(template.get(section, {}), (section,))
    return findings


def _strings(node: Any, path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, path + (str(key),))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, path + (str(index),))
    elif isinstance(node, str):
        yield path, node


def config_location(variable: str, stage: str, config: Dict[str, Any]) -> str:
    """Where in .chalice/config.json a function's variable is set for a stage."""
    stage_config = config.get("stages", {}).get(stage, {})
    if variable in (stage_config.get("environment_variables") or {}):
        return ".chalice/config.json stages.%s.environment_variables" % stage
    if variable in (config.get("environment_variables") or {}):
        return ".chalice/config.json environment_variables"
    return ".chalice/config.json (the function's own environment_variables)"


def check_placeholders(template: Dict[str, Any], stage: str, config: Dict[str, Any], blocking: bool) -> List[Finding]:
    """Every value still holding a placeholder: each function variable once,
    with where to set it and what it should be; anything else by its path."""
    variables: Dict[Tuple[str, str], List[str]] = {}
    findings = []
    for path, value in _strings(template):
        if not is_placeholder(value):
            continue
        if len(path) >= 6 and path[0] == "Resources" and path[2:5] == ("Properties", "Environment", "Variables"):
            variables.setdefault((path[5], value), []).append(path[1])
        else:
            findings.append(Finding(PLACEHOLDERS, "/".join(path), "%r is a placeholder" % value, blocking))
    for (variable, value), functions in sorted(variables.items()):
        what = TO_SET.get(variable, "its real value")
        findings.append(Finding(
            PLACEHOLDERS, config_location(variable, stage, config),
            "%s is the placeholder %r (in %d function(s)): set it to %s before deploying %s"
            % (variable, value, len(functions), what, stage), blocking))
    return findings


def config_placeholders(stage: str, config: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """The stage's function variables that hold a placeholder, read from
    .chalice/config.json alone: what the rehearsal should report."""
    config = config if config is not None else chalice_config()
    found = {}
    for name in config.get("lambda_functions") or {"api_handler": {}}:
        for variable, value in Config(chalice_stage=stage, function_name=name,
                                      config_from_disk=config).environment_variables.items():
            if isinstance(value, str) and is_placeholder(value):
                found[variable] = value
    return found


# ------------------------------------------------------------------ command

def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.rehearse", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, help="the Chalice stage (.chalice/config.json)")
    parser.add_argument("packaged", nargs="?", help="the stage's packaged directory (default build/<stage>)")
    parser.add_argument("--region", default=REGION, help="the stack's region (default AWS_DEFAULT_REGION or us-east-1)")
    parser.add_argument("--allow-placeholders", action="store_true",
                        help="report placeholders in prod as notes instead of failing")
    args = parser.parse_args(argv)
    if args.stage not in stages():
        parser.error("no stage %r in .chalice/config.json (%s)" % (args.stage, ", ".join(stages())))
    packaged_dir = args.packaged or os.path.join(ROOT, "build", args.stage)
    if not os.path.isfile(os.path.join(packaged_dir, "sam.yaml")):
        parser.error("no %s: `make package STAGE=%s` first" % (os.path.join(packaged_dir, "sam.yaml"), args.stage))
    rehearsal = rehearse(load_packaged(packaged_dir), args.stage, packaged_dir, args.region, args.allow_placeholders)
    translated = os.path.join(packaged_dir, "cloudformation.json")
    if rehearsal.template is not None:
        with open(translated, "w") as f:
            f.write(rehearsal.template_text)
    print("Rehearsal of %s in %s: %s → %s (%d resources)" % (
        args.stage, args.region, os.path.relpath(os.path.join(packaged_dir, "sam.yaml")),
        os.path.relpath(translated) if rehearsal.template is not None else "nothing",
        len((rehearsal.template or {}).get("Resources", {}))), file=out)
    print(rehearsal.report(), file=out)
    return 0 if rehearsal.ready else 1


if __name__ == "__main__":
    sys.exit(main())
