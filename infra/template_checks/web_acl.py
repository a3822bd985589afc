"""The web ACL in front of the API's stage: its association, its rules in
order with their answers and metrics, the alarm on the count of unlisted
Stripe deliveries, and the IP set being Stripe's webhook addresses."""
import json
import re
from typing import Any, Dict, List, Optional, Tuple

from chalice.config import Config

from infra.project import substitute
from infra.stripe_ips import InvalidAddressList, ip_set_addresses
from infra.stripe_ips import load as load_stripe_addresses
from infra.template_checks.api_stage import api_stages
from infra.template_checks.findings import Finding, getatt_target, resource_path, resources_of_type

WEB_ACL = "web ACL"

# The webhook's route, as the web ACL's rules name it in the URI path.
WEBHOOK_PATH = "/webhooks/stripe"
# The largest JSON body the functions take (app.py's MAX_JSON_BODY_BYTES):
# a larger one is refused by the web ACL before it reaches them.
FUNCTION_BODY_LIMIT = 64 * 1024
# What AssociationConfig's inspection limits let WAF see of a body.
INSPECTION_LIMITS = {"KB_16": 16 * 1024, "KB_32": 32 * 1024, "KB_48": 48 * 1024, "KB_64": 64 * 1024}
DEFAULT_INSPECTION_LIMIT = "KB_16"


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
    acl_name = getatt_target(association.get("Properties", {}).get("WebACLArn"))
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
    return getatt_target((reference or {}).get("Arn"))


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
