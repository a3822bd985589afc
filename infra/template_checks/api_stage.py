"""The API's one stage, the config's, with infra/template.yaml's throttling,
access log and metrics, and the API alarms watching it."""
from typing import Any, Dict, List, Tuple

from chalice.config import Config

from infra.project import load_template, substitute
from infra.template_checks.findings import Finding, resource_path, resources_of_type

API_STAGE = "API stage"


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

