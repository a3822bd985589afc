"""The rehearsal's checks on a stage's translated CloudFormation
(infra/rehearse.py runs them after SAM's transform and cfn-lint): the API's
one stage with its throttling, access log, metrics and alarms, and the web
ACL in front of it with its rules and Stripe's webhook addresses; each
function's settings as .chalice/config.json gives them, and the announcer
created after the bus it puts on; the schedules; no dangling reference; no
placeholder left."""
import dataclasses
import json
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from chalice.config import Config
from chalice.utils import to_cfn_resource_name

from chalicelib.settings import is_placeholder
from infra.project import chalice_config, load_template, substitute
from infra.stripe_ips import InvalidAddressList, ip_set_addresses
from infra.stripe_ips import load as load_stripe_addresses

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
API_STAGE, WEB_ACL, FUNCTIONS, SCHEDULES, REFERENCES, PLACEHOLDERS = (
    "API stage", "web ACL", "function settings", "schedules", "references", "placeholders")

# The webhook's route, as the web ACL's rules name it in the URI path.
WEBHOOK_PATH = "/webhooks/stripe"
# The largest JSON body the functions take (app.py's MAX_JSON_BODY_BYTES):
# a larger one is refused by the web ACL before it reaches them.
FUNCTION_BODY_LIMIT = 64 * 1024
# What AssociationConfig's inspection limits let WAF see of a body.
INSPECTION_LIMITS = {"KB_16": 16 * 1024, "KB_32": 32 * 1024, "KB_48": 48 * 1024, "KB_64": 64 * 1024}
DEFAULT_INSPECTION_LIMIT = "KB_16"


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


def check_web_acl(template: Dict[str, Any], stage: str, config: Dict[str, Any],
                  addresses: Optional[List[str]] = None) -> List[Finding]:
    """The config's API stage has a web ACL (allow by default) whose rules,
    in order: count a delivery signed like Stripe's from an address Stripe's
    list lacks (its alarm watching), block the webhook from any such address
    (API Gateway's WAF_FILTERED: 403 forbidden), limit each address on the
    other routes (429 rate_limited, Retry-After) and refuse there a body over
    the functions' limit (413 payload_too_large), each with its metrics; the
    IP set is infra/stripe_webhook_ips.json (or `addresses`)."""
    expected = Config(chalice_stage=stage, config_from_disk=config).api_gateway_stage
    acls = resources_of_type(template, "AWS::WAFv2::WebACL")
    associations = resources_of_type(template, "AWS::WAFv2::WebACLAssociation")
    found = [(name, association) for name, association in associations.items()
             if _associated_stage(template, association) == expected]
    if not found:
        return [Finding(WEB_ACL, "Resources", "no AWS::WAFv2::WebACLAssociation of a web ACL with the API stage %r"
                        " (arn:…:apigateway:…::/restapis/${RestAPI}/stages/%s): nothing stands before the API"
                        % (expected, expected))]
    name, association = found[0]
    findings = []
    stage_resources = sorted(resource for made, resource in api_stages(template) if made == expected)
    depends = association.get("DependsOn", [])
    if not set(stage_resources) & set([depends] if isinstance(depends, str) else depends):
        findings.append(Finding(WEB_ACL, resource_path(name, "DependsOn"),
                                "does not depend on %s, the stage it names: CloudFormation may associate the web"
                                " ACL before the stage exists" % (" or ".join(stage_resources) or "its stage")))
    acl_name = _getatt_target(association.get("Properties", {}).get("WebACLArn"))
    if acl_name not in acls:
        return findings + [Finding(WEB_ACL, resource_path(name, "Properties", "WebACLArn"),
                                   "is not the Arn of a web ACL of the template")]
    return findings + _web_acl_rules(template, acl_name, acls[acl_name].get("Properties", {}), stage, addresses)


def _associated_stage(template: Dict[str, Any], association: Dict[str, Any]) -> Optional[str]:
    """The stage of a RestApi of the template that an association's ARN names."""
    arn = (association.get("Properties") or {}).get("ResourceArn")
    text = arn.get("Fn::Sub") if isinstance(arn, dict) else None
    matched = re.search(r"/restapis/\$\{([^}.]+)\}/stages/([\w-]+)$", text) if isinstance(text, str) else None
    if not matched or matched.group(1) not in resources_of_type(template, "AWS::ApiGateway::RestApi"):
        return None
    return matched.group(2)


def _getatt_target(value: Any) -> Optional[str]:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return (target.split(".", 1)[0] if isinstance(target, str) else (target or [None])[0])
    return None


def _is_webhook_path(statement: Any) -> bool:
    """A match of the webhook's URI path, whatever comes before it (the
    stage on the execute-api host). Not EXACTLY: another spelling that API
    Gateway still routes to the webhook would escape it."""
    match = (statement or {}).get("ByteMatchStatement") if isinstance(statement, dict) else None
    if not match or "UriPath" not in (match.get("FieldToMatch") or {}):
        return False
    search, position = match.get("SearchString"), match.get("PositionalConstraint")
    return isinstance(search, str) and search.endswith(WEBHOOK_PATH) and position in ("CONTAINS", "ENDS_WITH")


def _is_not_webhook_path(statement: Any) -> bool:
    return isinstance(statement, dict) and _is_webhook_path((statement.get("NotStatement") or {}).get("Statement"))


def _outside_ip_set(statement: Any) -> Optional[str]:
    """The IP set a `not from this IP set` statement names, or None."""
    inner = ((statement or {}).get("NotStatement") or {}).get("Statement") if isinstance(statement, dict) else None
    reference = (inner or {}).get("IPSetReferenceStatement") if isinstance(inner, dict) else None
    return _getatt_target((reference or {}).get("Arn"))


def _conjuncts(statement: Any) -> List[Any]:
    if isinstance(statement, dict) and "AndStatement" in statement:
        return list((statement["AndStatement"] or {}).get("Statements") or [])
    return [statement]


def _custom_answer(acl: Dict[str, Any], rule: Dict[str, Any]) -> Tuple[Optional[int], Optional[str], Dict[str, str]]:
    """A blocking rule's custom answer: status, the body's error code, headers."""
    block = (rule.get("Action") or {}).get("Block")
    response = (block or {}).get("CustomResponse") if isinstance(block, dict) else None
    if not response:
        return None, None, {}
    body = ((acl.get("CustomResponseBodies") or {}).get(response.get("CustomResponseBodyKey")) or {})
    code = None
    if body.get("ContentType") == "APPLICATION_JSON":
        try:
            code = json.loads(body.get("Content", ""))["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
    headers = {h.get("Name", "").lower(): h.get("Value") for h in response.get("ResponseHeaders") or []}
    return response.get("ResponseCode"), code, headers


def _web_acl_rules(template: Dict[str, Any], acl_name: str, acl: Dict[str, Any], stage: str,
                   addresses: Optional[List[str]]) -> List[Finding]:
    findings = []

    def finding(where: Tuple[Any, ...], message: str) -> None:
        findings.append(Finding(WEB_ACL, resource_path(acl_name, "Properties", *where), message))

    if acl.get("Scope") != "REGIONAL":
        finding(("Scope",), "is %r: an API Gateway stage takes a REGIONAL web ACL" % acl.get("Scope"))
    if set(acl.get("DefaultAction") or {}) != {"Allow"}:
        finding(("DefaultAction",), "is not Allow: a request no rule refuses would be refused")
    rules = sorted(acl.get("Rules") or [], key=lambda rule: rule.get("Priority", 0))
    metrics = [((rule.get("VisibilityConfig") or {}).get("MetricName"), rule) for rule in rules]
    for index, rule in enumerate(acl.get("Rules") or []):
        if not (rule.get("VisibilityConfig") or {}).get("CloudWatchMetricsEnabled"):
            finding(("Rules", index, "VisibilityConfig"), "rule %s sends no CloudWatch metrics" % rule.get("Name"))
    if len({name for name, _ in metrics}) != len(metrics):
        finding(("Rules",), "two rules share a metric name: their counts would be one")

    def rules_where(test: Any) -> List[Dict[str, Any]]:
        return [rule for rule in rules if test(rule)]

    def priority(rule: Dict[str, Any]) -> int:
        return rule.get("Priority", 0)

    # The webhook from Stripe's addresses alone, and the IP set being the file.
    def stripe_only(rule: Dict[str, Any]) -> Optional[str]:
        parts = _conjuncts(rule.get("Statement"))
        ip_sets = [_outside_ip_set(part) for part in parts if _outside_ip_set(part)]
        return ip_sets[0] if ip_sets and any(_is_webhook_path(part) for part in parts) else None

    blocking = rules_where(lambda rule: "Block" in (rule.get("Action") or {}) and stripe_only(rule))
    if not blocking:
        finding(("Rules",), "no rule blocks %s from addresses outside Stripe's webhook list" % WEBHOOK_PATH)
    else:
        webhook_rule = blocking[0]
        if _custom_answer(acl, webhook_rule)[0] is not None:
            finding(("Rules",), "rule %s answers with its own response, not API Gateway's WAF_FILTERED"
                    " (the contract's 403 forbidden)" % webhook_rule.get("Name"))
        else:
            findings.extend(_waf_filtered_answer(template))
        findings.extend(_ip_set_is_the_file(template, stripe_only(webhook_rule), addresses))
        counting = rules_where(lambda rule: "Count" in (rule.get("Action") or {}) and stripe_only(rule))
        if not counting or priority(counting[0]) > priority(webhook_rule):
            finding(("Rules",), "no rule before %s counts deliveries from an address outside Stripe's list:"
                    " the alarm that says Stripe added one has nothing to watch" % webhook_rule.get("Name"))
        elif not _alarm_watches(template, "CountedRequests", acl, counting[0], stage):
            finding(("Rules",), "no alarm on the alarm topic watches CountedRequests of rule %s"
                    % counting[0].get("Name"))

    # Each address's rate, the webhook aside.
    rated = rules_where(lambda rule: ((rule.get("Statement") or {}).get("RateBasedStatement") or {})
                        .get("AggregateKeyType") == "IP")
    if not rated:
        finding(("Rules",), "no rate-based rule per IP address")
    for rule in rated:
        status, code, headers = _custom_answer(acl, rule)
        if (status, code) != (429, "rate_limited") or not str(headers.get("retry-after", "")).isdigit():
            finding(("Rules",), "rule %s answers %s %s%s, not 429 rate_limited with Retry-After in seconds"
                    % (rule.get("Name"), status, code, " with Retry-After" if "retry-after" in headers else ""))
        scope = rule["Statement"]["RateBasedStatement"].get("ScopeDownStatement")
        if not _is_not_webhook_path(scope):
            finding(("Rules",), "rule %s also counts %s: a month-start burst of Stripe's deliveries from its few"
                    " addresses would be refused" % (rule.get("Name"), WEBHOOK_PATH))

    # Bodies over the functions' limit, the webhook aside.
    limit_name = (((acl.get("AssociationConfig") or {}).get("RequestBody") or {}).get("API_GATEWAY") or {}).get(
        "DefaultSizeInspectionLimit", DEFAULT_INSPECTION_LIMIT)
    inspected = INSPECTION_LIMITS.get(limit_name, INSPECTION_LIMITS[DEFAULT_INSPECTION_LIMIT])
    sized = []
    for rule in rules:
        for part in _conjuncts(rule.get("Statement")):
            size = (part or {}).get("SizeConstraintStatement") if isinstance(part, dict) else None
            if size and "Body" in (size.get("FieldToMatch") or {}) and "Block" in (rule.get("Action") or {}):
                sized.append((rule, size))
    if not sized:
        finding(("Rules",), "no rule refuses a body over %d bytes: one over Lambda's 6 MB would reach API Gateway's"
                " 5xx" % FUNCTION_BODY_LIMIT)
    for rule, size in sized:
        status, code, _ = _custom_answer(acl, rule)
        if (status, code) != (413, "payload_too_large"):
            finding(("Rules",), "rule %s answers %s %s, not 413 payload_too_large" % (rule.get("Name"), status, code))
        if size.get("FieldToMatch", {}).get("Body", {}).get("OversizeHandling") != "MATCH":
            finding(("Rules",), "rule %s does not match an oversize body (OversizeHandling MATCH): WAF sees only the"
                    " first %d bytes, so a larger body would pass" % (rule.get("Name"), inspected))
        if size.get("ComparisonOperator") not in ("GT", "GE") or not isinstance(size.get("Size"), int):
            finding(("Rules",), "rule %s does not refuse bodies over a size" % rule.get("Name"))
        # An oversize body matches: the rule refuses whatever is over the
        # smaller of its size and what WAF is handed.
        elif inspected < FUNCTION_BODY_LIMIT:
            finding(("AssociationConfig",), "lets WAF see %d bytes of a body: rule %s refuses every body over that,"
                    " which the functions take up to %d" % (inspected, rule.get("Name"), FUNCTION_BODY_LIMIT))
        elif size["Size"] < FUNCTION_BODY_LIMIT:
            finding(("Rules",), "rule %s refuses bodies over %d bytes, which the functions take up to %d"
                    % (rule.get("Name"), size["Size"], FUNCTION_BODY_LIMIT))
        if not any(_is_not_webhook_path(part) for part in _conjuncts(rule.get("Statement"))):
            finding(("Rules",), "rule %s also refuses the webhook's bodies, whose events may be over %d bytes"
                    % (rule.get("Name"), size.get("Size")))
    return findings


def _waf_filtered_answer(template: Dict[str, Any]) -> List[Finding]:
    """API Gateway's answer to what WAF blocks with no answer of its own."""
    findings = []
    for name, api in resources_of_type(template, "AWS::ApiGateway::RestApi").items():
        body = (api.get("Properties") or {}).get("Body") or {}
        response = (body.get("x-amazon-apigateway-gateway-responses") or {}).get("WAF_FILTERED") or {}
        text = (response.get("responseTemplates") or {}).get("application/json", "")
        try:
            code = json.loads(text)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if (str(response.get("statusCode")), code) != ("403", "forbidden"):
            findings.append(Finding(WEB_ACL, resource_path(name, "Properties", "Body",
                                                           "x-amazon-apigateway-gateway-responses", "WAF_FILTERED"),
                                    "is not the contract's 403 forbidden, which the webhook rule's block answers"))
    return findings


def _ip_set_is_the_file(template: Dict[str, Any], ip_set: Optional[str],
                        addresses: Optional[List[str]]) -> List[Finding]:
    resource = template.get("Resources", {}).get(ip_set or "")
    if not resource or resource.get("Type") != "AWS::WAFv2::IPSet":
        return [Finding(WEB_ACL, resource_path(ip_set), "is not an AWS::WAFv2::IPSet of the template")]
    try:
        wanted = ip_set_addresses(addresses if addresses is not None else load_stripe_addresses())
    except InvalidAddressList as exc:
        return [Finding(WEB_ACL, "infra/stripe_webhook_ips.json", str(exc))]
    held = (resource.get("Properties") or {}).get("Addresses") or []
    if sorted(held) == sorted(wanted):
        return []
    missing, extra = sorted(set(wanted) - set(held)), sorted(set(held) - set(wanted))
    detail = "; ".join(part for part in ("without %s" % ", ".join(missing) if missing else "",
                                         "with %s" % ", ".join(extra) if extra else "") if part)
    return [Finding(WEB_ACL, resource_path(ip_set, "Properties", "Addresses"),
                    "holds %d addresses, not infra/stripe_webhook_ips.json's %d (%s): package with"
                    " infra/package.py, which fills them" % (len(held), len(wanted), detail or "in another order"))]


def _alarm_watches(template: Dict[str, Any], metric: str, acl: Dict[str, Any], rule: Dict[str, Any],
                   stage: str) -> bool:
    """Whether an alarm that tells a topic of the template watches a rule's metric."""
    acl_metric = substitute((acl.get("VisibilityConfig") or {}).get("MetricName"), {"Stage": stage})
    rule_metric = (rule.get("VisibilityConfig") or {}).get("MetricName")
    topics = [{"Ref": name} for name in resources_of_type(template, "AWS::SNS::Topic")]
    for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm.get("Properties", {})
        dimensions = {d.get("Name"): substitute(d.get("Value"), {"Stage": stage})
                      for d in properties.get("Dimensions") or []}
        if ((properties.get("Namespace"), properties.get("MetricName")) == ("AWS/WAFV2", metric)
                and (dimensions.get("WebACL"), dimensions.get("Rule")) == (acl_metric, rule_metric)
                and any(action in topics for action in properties.get("AlarmActions") or [])):
            return True
    return False


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
    return findings + check_announcers(template)


def check_announcers(template: Dict[str, Any]) -> List[Finding]:
    """A function whose role is the one a bus's policy lets put on it (the
    access bus: announce_access's) depends on that bus, so that neither it
    nor the stream trigger that runs it starts before the bus exists."""
    findings = []
    functions = resources_of_type(template, "AWS::Lambda::Function")
    for bus, resource in resources_of_type(template, "AWS::Events::EventBus").items():
        for role in _roles_let_put(resource):
            for name, function in sorted(functions.items()):
                if _getatt_target((function.get("Properties") or {}).get("Role")) != role:
                    continue
                depends = function.get("DependsOn", [])
                if bus not in ([depends] if isinstance(depends, str) else depends):
                    findings.append(Finding(FUNCTIONS, resource_path(name, "DependsOn"),
                                            "does not depend on %s, the bus it puts on: CloudFormation may create"
                                            " it first, and its first puts would fail" % bus))
    return findings


def _roles_let_put(bus: Dict[str, Any]) -> List[str]:
    """The roles a bus's policy exempts from its Deny of events:PutEvents."""
    roles = []
    for statement in ((bus.get("Properties") or {}).get("Policy") or {}).get("Statement") or []:
        actions = statement.get("Action")
        if statement.get("Effect") != "Deny" or "events:PutEvents" not in (
                [actions] if isinstance(actions, str) else actions or []):
            continue
        exempt = ((statement.get("Condition") or {}).get("ArnNotEquals") or {}).get("aws:PrincipalArn")
        for value in exempt if isinstance(exempt, list) else [exempt]:
            role = _getatt_target(value)
            if role:
                roles.append(role)
    return roles


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
