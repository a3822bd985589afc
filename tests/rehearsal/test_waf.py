"""The web ACL on the API's stage, as CloudFormation gets it from each
stage's package: its rules, their order and answers, Stripe's webhook
addresses filled in from infra/stripe_webhook_ips.json, and the announcer
created after its bus (infra/template_checks/, its web ACL and function
checks; infra/README.md, The web ACL)."""
import copy
import json

import pytest

from app import MAX_JSON_BODY_BYTES
from chalicelib.deliveries import MAX_BODY_BYTES
from infra import rehearse, stripe_ips, template_checks
from infra.package import STRIPE_IP_SET
from infra.project import TEMPLATE_PATH, chalice_config, stages
from infra.template_checks import web_acl

REGION = "us-east-1"
ACL, ASSOCIATION, ALARM = "ApiWebACL", "ApiWebACLAssociation", "WebhookUnlistedAddressAlarm"
COUNT, WEBHOOK = "StripeDeliveryFromUnlistedAddress", "WebhookFromStripeOnly"
RATE, SIZE = "RatePerAddress", "BodyOver64KiB"


def acl(template):
    return template["Resources"][ACL]["Properties"]


def rule(template, name):
    [found] = [r for r in acl(template)["Rules"] if r["Name"] == name]
    return found


def answer(template, name):
    """(status, the body's error, headers) of a rule's custom answer."""
    response = rule(template, name)["Action"]["Block"]["CustomResponse"]
    body = acl(template)["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    headers = {h["Name"]: h["Value"] for h in response.get("ResponseHeaders", [])}
    return response["ResponseCode"], json.loads(body["Content"])["error"], headers


def web_acl_findings(template, stage="dev"):
    return {(f.where, f.message) for f in template_checks.check_web_acl(template, stage, chalice_config())}


@pytest.mark.parametrize("stage", stages())
def test_each_stage_has_a_web_acl_on_its_api_stage_created_after_the_stage(stage, rehearsals):
    rehearsal = rehearsals[stage]
    association = rehearsal.template["Resources"][ASSOCIATION]
    assert association["Properties"]["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/api"}
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [ACL, "Arn"]}
    # The stage SAM's transform makes: the association waits for it.
    assert association["DependsOn"] == "RestAPIapiStage"
    assert ("api", "RestAPIapiStage") in template_checks.api_stages(rehearsal.template)
    assert acl(rehearsal.template)["Scope"] == "REGIONAL" and acl(rehearsal.template)["DefaultAction"] == {"Allow": {}}
    assert rehearsal.of(template_checks.WEB_ACL) == []
    assert "  ok   web ACL" in rehearsal.report()


def test_the_rules_run_in_order_and_answer_in_the_contracts_words(rehearsals):
    template = rehearsals["dev"].template
    assert [(r["Priority"], r["Name"], list(r["Action"])) for r in acl(template)["Rules"]] == [
        (0, COUNT, ["Count"]), (1, WEBHOOK, ["Block"]), (2, RATE, ["Block"]), (3, SIZE, ["Block"])]
    # A plain block: API Gateway's WAF_FILTERED answers it, the contract's 403.
    assert rule(template, WEBHOOK)["Action"]["Block"] == {}
    waf_filtered = template["Resources"]["RestAPI"]["Properties"]["Body"][
        "x-amazon-apigateway-gateway-responses"]["WAF_FILTERED"]
    assert waf_filtered["statusCode"] == "403"
    assert json.loads(waf_filtered["responseTemplates"]["application/json"])["error"]["code"] == "forbidden"
    status, error, headers = answer(template, RATE)
    assert (status, error["code"], headers) == (429, "rate_limited", {"Retry-After": "60", "Cache-Control": "no-store"})
    # Retry-After is the rate's window: an address is let through again once
    # its last 60 seconds are under the limit.
    rated = rule(template, RATE)["Statement"]["RateBasedStatement"]
    assert (rated["AggregateKeyType"], rated["EvaluationWindowSec"], rated["Limit"]) == (
        "IP", 60, {"Ref": "IpRateLimit"})
    status, error, headers = answer(template, SIZE)
    assert (status, error["code"], headers) == (413, "payload_too_large", {"Cache-Control": "no-store"})
    for name in (COUNT, WEBHOOK, RATE, SIZE):
        visibility = rule(template, name)["VisibilityConfig"]
        assert visibility["CloudWatchMetricsEnabled"] and visibility["MetricName"] == name


def test_the_size_rule_refuses_what_the_functions_refuse_and_never_a_stripe_event(rehearsals):
    template = rehearsals["dev"].template
    [not_webhook, size] = rule(template, SIZE)["Statement"]["AndStatement"]["Statements"]
    size = size["SizeConstraintStatement"]
    assert (size["ComparisonOperator"], size["Size"]) == ("GT", MAX_JSON_BODY_BYTES)
    assert template_checks.FUNCTION_BODY_LIMIT == MAX_JSON_BODY_BYTES
    # WAF is handed 64 KiB of a body; a larger one is oversize, and matches.
    assert acl(template)["AssociationConfig"] == {
        "RequestBody": {"API_GATEWAY": {"DefaultSizeInspectionLimit": "KB_64"}}}
    assert size["FieldToMatch"] == {"Body": {"OversizeHandling": "MATCH"}}
    # The webhook takes up to 1 MiB (chalicelib/deliveries.py) and only Stripe reaches it.
    assert MAX_BODY_BYTES > MAX_JSON_BODY_BYTES
    assert web_acl._is_not_webhook_path(not_webhook)
    assert web_acl._is_not_webhook_path(rule(template, RATE)["Statement"]["RateBasedStatement"][
        "ScopeDownStatement"])


def test_the_webhook_path_is_matched_however_it_is_spelt(rehearsals):
    [path, outside] = rule(rehearsals["dev"].template, WEBHOOK)["Statement"]["AndStatement"]["Statements"]
    match = path["ByteMatchStatement"]
    assert (match["FieldToMatch"], match["PositionalConstraint"], match["SearchString"]) == (
        {"UriPath": {}}, "CONTAINS", "/webhooks/stripe")
    assert [t["Type"] for t in sorted(match["TextTransformations"], key=lambda t: t["Priority"])] == [
        "URL_DECODE", "NORMALIZE_PATH", "LOWERCASE"]
    assert outside == {"NotStatement": {"Statement": {"IPSetReferenceStatement": {
        "Arn": {"Fn::GetAtt": [STRIPE_IP_SET, "Arn"]}}}}}


@pytest.mark.parametrize("stage", stages())
def test_the_packaged_ip_set_is_the_address_file_and_the_template_does_not_repeat_it(stage, sam, rehearsals):
    addresses = stripe_ips.load()
    wanted = ["%s/32" % address for address in addresses]
    assert sam[stage]["Resources"][STRIPE_IP_SET]["Properties"]["Addresses"] == wanted
    assert rehearsals[stage].template["Resources"][STRIPE_IP_SET]["Properties"]["Addresses"] == wanted
    with open(TEMPLATE_PATH) as f:
        template_text = f.read()
    assert not [address for address in addresses if address in template_text]


def test_an_alarm_on_the_topic_watches_deliveries_from_an_address_the_list_lacks(rehearsals):
    template = rehearsals["dev"].template
    alarm = template["Resources"][ALARM]["Properties"]
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/WAFV2", "CountedRequests")
    assert dimensions == {"WebACL": acl(template)["VisibilityConfig"]["MetricName"], "Rule": COUNT,
                          "Region": {"Ref": "AWS::Region"}}
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert alarm["AlarmName"] == {"Fn::Sub": "stripe-connector-${Stage}-webhook-unlisted-address"}
    # Counted before the rule that blocks it, or the count would never happen.
    counted = rule(template, COUNT)["Statement"]["AndStatement"]["Statements"]
    assert counted[:2] == rule(template, WEBHOOK)["Statement"]["AndStatement"]["Statements"]
    assert counted[2]["SizeConstraintStatement"]["FieldToMatch"] == {"SingleHeader": {"Name": "stripe-signature"}}


@pytest.mark.parametrize("stage", stages())
def test_announce_access_is_created_after_the_bus_it_puts_on(stage, rehearsals):
    template = rehearsals[stage].template
    assert template["Resources"]["AnnounceAccess"]["DependsOn"] == "AccessEventBus"
    assert template_checks.check_announcers(template) == []


def test_an_announcer_that_does_not_wait_for_its_bus_is_reported(rehearsals):
    template = copy.deepcopy(rehearsals["prod"].template)
    del template["Resources"]["AnnounceAccess"]["DependsOn"]
    found = [(f.check, f.where) for f in template_checks.check_functions(template, "prod", chalice_config())]
    assert found == [(template_checks.FUNCTIONS, "Resources/AnnounceAccess/DependsOn")]


def _remove_rule(name):
    def mutate(template):
        acl(template)["Rules"] = [r for r in acl(template)["Rules"] if r["Name"] != name]
    return mutate


def _set(path, value):
    """A mutation that sets the value at a path of keys (rule names pick a rule)."""
    def mutate(template):
        node = template
        for key in path[:-1]:
            node = rule(template, key) if key in (COUNT, WEBHOOK, RATE, SIZE) else node[key]
        if value is None:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return mutate


def _statements(name):
    return lambda template: rule(template, name)["Statement"]["AndStatement"]["Statements"]


def _swap_webhook_rules(template):
    rule(template, COUNT)["Priority"], rule(template, WEBHOOK)["Priority"] = 1, 0


def _one_address_less(template):
    template["Resources"][STRIPE_IP_SET]["Properties"]["Addresses"].pop()


def _size_on_every_path(template):
    rule(template, SIZE)["Statement"] = _statements(SIZE)(template)[1]


def _oversize(handling):
    def mutate(template):
        _statements(SIZE)(template)[1]["SizeConstraintStatement"]["FieldToMatch"]["Body"]["OversizeHandling"] = handling
    return mutate


def _size(value):
    def mutate(template):
        _statements(SIZE)(template)[1]["SizeConstraintStatement"]["Size"] = value
    return mutate


def _rate_answers(status):
    def mutate(template):
        rule(template, RATE)["Action"]["Block"]["CustomResponse"]["ResponseCode"] = status
    return mutate


def _no_retry_after(template):
    response = rule(template, RATE)["Action"]["Block"]["CustomResponse"]
    response["ResponseHeaders"] = [h for h in response["ResponseHeaders"] if h["Name"] != "Retry-After"]


def _waf_filtered(status):
    def mutate(template):
        template["Resources"]["RestAPI"]["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"][
            "WAF_FILTERED"]["statusCode"] = status
    return mutate


def _other_stage(template):
    template["Resources"][ASSOCIATION]["Properties"]["ResourceArn"] = {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/Stage"}


def _no_alarm(template):
    del template["Resources"][ALARM]


# (what is wrong, how, where the finding is, words of its message)
MISTAKES = [
    ("no association", lambda t: t["Resources"].pop(ASSOCIATION), "Resources", "nothing stands before the API"),
    ("the association on another stage", _other_stage, "Resources", "no AWS::WAFv2::WebACLAssociation"),
    ("the association not waiting for the stage", _set(("Resources", ASSOCIATION, "DependsOn"), None),
     "Resources/ApiWebACLAssociation/DependsOn", "may associate the web ACL before the stage exists"),
    ("a default of Block", _set(("Resources", ACL, "Properties", "DefaultAction"), {"Block": {}}),
     "Resources/ApiWebACL/Properties/DefaultAction", "is not Allow"),
    ("the webhook open to any address", _remove_rule(WEBHOOK), "Resources/ApiWebACL/Properties/Rules",
     "no rule blocks /webhooks/stripe"),
    ("the webhook's block answering itself", _set((WEBHOOK, "Action", "Block"),
                                                  {"CustomResponse": {"ResponseCode": 404}}),
     "Resources/ApiWebACL/Properties/Rules", "not API Gateway's WAF_FILTERED"),
    ("WAF_FILTERED answering 404", _waf_filtered("404"),
     "Resources/RestAPI/Properties/Body/x-amazon-apigateway-gateway-responses/WAF_FILTERED", "403 forbidden"),
    ("an address missing from the IP set", _one_address_less, "Resources/StripeWebhookIPSet/Properties/Addresses",
     "not infra/stripe_webhook_ips.json's"),
    ("the count after the block", _swap_webhook_rules, "Resources/ApiWebACL/Properties/Rules",
     "has nothing to watch"),
    ("no alarm on the count", _no_alarm, "Resources/ApiWebACL/Properties/Rules", "no alarm on the alarm topic"),
    ("no rate rule", _remove_rule(RATE), "Resources/ApiWebACL/Properties/Rules", "no rate-based rule"),
    ("the rate rule answering 403", _rate_answers(403), "Resources/ApiWebACL/Properties/Rules",
     "not 429 rate_limited"),
    ("the rate rule without Retry-After", _no_retry_after, "Resources/ApiWebACL/Properties/Rules",
     "not 429 rate_limited with Retry-After"),
    ("the rate rule on the webhook too", _set((RATE, "Statement", "RateBasedStatement", "ScopeDownStatement"), None),
     "Resources/ApiWebACL/Properties/Rules", "month-start burst"),
    ("no size rule", _remove_rule(SIZE), "Resources/ApiWebACL/Properties/Rules", "over Lambda's 6 MB"),
    ("an oversize body let through", _oversize("CONTINUE"), "Resources/ApiWebACL/Properties/Rules",
     "a larger body would pass"),
    ("a size under the functions' limit", _size(16 * 1024), "Resources/ApiWebACL/Properties/Rules",
     "refuses bodies over 16384 bytes, which the functions take up to 65536"),
    ("WAF handed 16 KiB of a body", _set(("Resources", ACL, "Properties", "AssociationConfig"), None),
     "Resources/ApiWebACL/Properties/AssociationConfig", "lets WAF see 16384 bytes"),
    ("a size rule that refuses no size", _set((SIZE, "Statement", "AndStatement", "Statements", 1,
                                               "SizeConstraintStatement", "ComparisonOperator"), "LT"),
     "Resources/ApiWebACL/Properties/Rules", "does not refuse bodies over a size"),
    ("the size rule on the webhook too", _size_on_every_path, "Resources/ApiWebACL/Properties/Rules",
     "refuses the webhook's bodies"),
    ("a rule without metrics", _set((SIZE, "VisibilityConfig", "CloudWatchMetricsEnabled"), False),
     "Resources/ApiWebACL/Properties/Rules/3/VisibilityConfig", "sends no CloudWatch metrics"),
]


@pytest.mark.parametrize("mistake, mutate, where, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_in_the_web_acl_is_reported_where_it_is(mistake, mutate, where, words, rehearsals):
    template = copy.deepcopy(rehearsals["dev"].template)
    mutate(template)
    found = web_acl_findings(template)
    assert [w for w, message in found if w == where and words in message], (mistake, found)


def test_the_rehearsal_fails_a_package_whose_ip_set_is_not_the_file_under_web_acl(sam, packaged):
    unfilled = copy.deepcopy(sam["dev"])
    unfilled["Resources"][STRIPE_IP_SET]["Properties"]["Addresses"] = []
    rehearsal = rehearse.rehearse(unfilled, "dev", packaged["dev"], REGION)
    assert not rehearsal.ready
    assert [(f.check, f.where) for f in rehearsal.blocking] == [
        (template_checks.WEB_ACL, "Resources/StripeWebhookIPSet/Properties/Addresses")]
    assert "  FAIL web ACL: Resources/StripeWebhookIPSet/Properties/Addresses: holds 0 addresses" in rehearsal.report()
