"""The rehearsal's checks on a stage's translated CloudFormation
(infra/rehearse.py runs them after SAM's transform and cfn-lint): the API's
one stage with its throttling, access log, metrics and alarms; each
function's settings as .chalice/config.json gives them; the schedules; no
dangling reference; no placeholder left."""
import dataclasses
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from chalice.config import Config
from chalice.utils import to_cfn_resource_name

from chalicelib.settings import is_placeholder
from infra.project import chalice_config, load_template, substitute

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

# The checks made here, as the report names them.
API_STAGE, FUNCTIONS, SCHEDULES, REFERENCES, PLACEHOLDERS = (
    "API stage", "function settings", "schedules", "references", "placeholders")


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str
    where: str  # a path in the template, Resources/<id>/…, or a file
    message: str
    blocking: bool = True

    def __str__(self) -> str:
        return "%s: %s" % (self.where, self.message)


def resource_path(logical_id: Optional[str], *rest: Any) -> str:
    if logical_id is None:
        return "the template"
    return "/".join(["Resources", logical_id] + [str(part) for part in rest])


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
            findings.append(Finding(API_STAGE, resource_path(resource),
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
            findings.append(Finding(API_STAGE, resource_path(stage_resources[expected], "Properties", key),
                                    "is not infra/template.yaml's RestAPI %s" % key))
    settings = stage_properties.get("MethodSettings") or []
    if not any(s.get("ResourcePath") == "/*" and s.get("HttpMethod") == "*" and "ThrottlingRateLimit" in s
               and "ThrottlingBurstLimit" in s for s in settings):
        findings.append(Finding(API_STAGE, resource_path(stage_resources[expected], "Properties", "MethodSettings"),
                                "no throttling for every method (/*, *)"))
    if not (stage_properties.get("AccessLogSetting") or {}).get("DestinationArn"):
        findings.append(Finding(API_STAGE, resource_path(stage_resources[expected], "Properties"), "no access log"))
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
            findings.append(Finding(API_STAGE, resource_path(name, "Properties", "Dimensions"),
                                    "watches stage %r, not %r" % (dimensions["Stage"], stage_name)))
        if "ApiName" in dimensions and dimensions["ApiName"] not in api_names:
            findings.append(Finding(API_STAGE, resource_path(name, "Properties", "Dimensions"),
                                    "watches API %r, not one of %s"
                                    % (dimensions["ApiName"], sorted(map(str, api_names)))))
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
            findings.append(Finding(FUNCTIONS, resource_path(chalice_logical_id(name)),
                                    "no function for %s (.chalice/config.json)" % name))
            continue
        properties = template["Resources"][logical].get("Properties", {})
        settings = Config(chalice_stage=stage, function_name=name, config_from_disk=config)
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        for variable, value in sorted(settings.environment_variables.items()):
            if variables.get(variable) != value:
                findings.append(Finding(FUNCTIONS, resource_path(logical, "Properties", "Environment", "Variables",
                                                                  variable),
                                        "is %r, the config's %s is %r" % (variables.get(variable), stage, value)))
        for key, wanted in (("Timeout", settings.lambda_timeout), ("MemorySize", settings.lambda_memory_size)):
            if wanted is not None and properties.get(key) != wanted:
                findings.append(Finding(FUNCTIONS, resource_path(logical, "Properties", key),
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
                findings.append(Finding(SCHEDULES, resource_path(name, "Properties", "ScheduleExpression"), problem))
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
                    if isinstance(value, str):
                        text, local = value, {}
                    else:
                        text, local = value[0], value[1] if len(value) > 1 else {}
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
                dangling(resource_path(name, "DependsOn"), "on %s, which the template does not have" % target)
        if "Condition" in resource and resource["Condition"] not in conditions:
            dangling(resource_path(name, "Condition"), "%s is not a condition of the template" % resource["Condition"])
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
