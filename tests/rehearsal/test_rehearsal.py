"""Each stage's packaged template through SAM's transform and cfn-lint, and
what a deployer needs of the stack that comes out (infra/rehearse.py)."""
import copy
import io
import json

import pytest

from infra import rehearse, template_checks
from infra.project import chalice_config, load_template, stage_environment, stages

REGION = "us-east-1"


@pytest.mark.parametrize("stage", stages())
def test_each_stage_goes_through_the_transform_and_cfn_lint_without_a_finding(stage, rehearsals):
    rehearsal = rehearsals[stage]
    assert rehearsal.template is not None, rehearsal.report()
    assert "Transform" not in rehearsal.template
    assert not [r for r in rehearsal.template["Resources"].values() if r["Type"].startswith("AWS::Serverless::")]
    assert rehearsal.of(rehearse.ARTIFACT) + rehearsal.of(rehearse.TRANSLATE) + rehearsal.of(rehearse.LINT) == []


@pytest.mark.parametrize("stage", stages())
def test_the_api_has_one_stage_named_api_with_its_throttling_access_log_and_metrics(stage, rehearsals):
    template = rehearsals[stage].template
    # SAM's Deployment makes a stage `Stage` through its StageName unless
    # Globals.Api.OpenApiVersion is set: no throttling, log or metrics there.
    assert template_checks.api_stages(template) == [("api", "RestAPIapiStage")]
    stage_properties = template["Resources"]["RestAPIapiStage"]["Properties"]
    every_method, webhook = stage_properties["MethodSettings"]
    assert (every_method["ResourcePath"], every_method["HttpMethod"]) == ("/*", "*")
    assert every_method["ThrottlingRateLimit"] == {"Ref": "ApiRateLimit"}
    assert every_method["ThrottlingBurstLimit"] == {"Ref": "ApiBurstLimit"}
    assert (webhook["ResourcePath"], webhook["HttpMethod"], webhook["MetricsEnabled"]) == (
        "/~1webhooks~1stripe", "POST", True)
    assert webhook["ThrottlingRateLimit"] == {"Ref": "WebhookRateLimit"}
    assert stage_properties["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    assert "$context.requestId" in stage_properties["AccessLogSetting"]["Format"]
    # The webhook's 5xx alarm watches the stage the webhook is served on.
    dimensions = {d["Name"]: d["Value"] for d in
                  template["Resources"]["WebhookServerErrorsAlarm"]["Properties"]["Dimensions"]}
    assert dimensions["Stage"] == "api"
    assert rehearsals[stage].of(template_checks.API_STAGE) == []


def test_a_second_stage_is_reported_with_the_resource_that_makes_it(rehearsals):
    template = copy.deepcopy(rehearsals["dev"].template)
    deployment = next(name for name, r in template["Resources"].items() if r["Type"] == "AWS::ApiGateway::Deployment")
    template["Resources"][deployment]["Properties"]["StageName"] = "Stage"
    findings = template_checks.check_api_stage(template, "dev", chalice_config())
    assert [(f.where, f.blocking) for f in findings] == [("Resources/" + deployment, True)]
    assert "'Stage' beside 'api'" in findings[0].message


@pytest.mark.parametrize("stage", stages())
def test_every_function_carries_the_stage_settings_from_the_chalice_config(stage, rehearsals):
    template = rehearsals[stage].template
    config = chalice_config()
    functions = template_checks.chalice_functions(template, config)
    assert set(functions) == set(config["lambda_functions"]) and None not in functions.values()
    environment = stage_environment(stage)
    for name, logical in functions.items():
        properties = template["Resources"][logical]["Properties"]
        variables = properties["Environment"]["Variables"]
        assert {k: variables.get(k) for k in environment} == environment, name
        timeout = (config["stages"][stage].get("lambda_functions", {}).get(name, {}).get("lambda_timeout")
                   or config["lambda_timeout"])
        assert (properties["Timeout"], properties["MemorySize"]) == (timeout, config["lambda_memory_size"]), name
    assert rehearsals[stage].of(template_checks.FUNCTIONS) == []


def test_a_function_whose_settings_differ_from_the_config_is_reported(rehearsals):
    template = copy.deepcopy(rehearsals["prod"].template)
    template["Resources"]["SyncWorker"]["Properties"]["Timeout"] = 60
    del template["Resources"]["CatchUp"]["Properties"]["Environment"]["Variables"]["CONNECTIONS_TABLE"]
    del template["Resources"]["AnnounceAccess"]
    found = {(f.where, f.message) for f in template_checks.check_functions(template, "prod", chalice_config())}
    assert found == {
        ("Resources/SyncWorker/Properties/Timeout", "is 60, the config's prod is 300"),
        ("Resources/CatchUp/Properties/Environment/Variables/CONNECTIONS_TABLE",
         "is None, the config's prod is 'stripe-connector-prod-connections'"),
        ("Resources/AnnounceAccess", "no function for announce_access (.chalice/config.json)"),
    }


@pytest.mark.parametrize("stage", stages())
def test_each_schedule_is_a_valid_expression_on_a_rule_that_runs_its_function(stage, sam, rehearsals):
    template = rehearsals[stage].template
    scheduled = {(name, event["Properties"]["Schedule"])
                 for name, function in rehearse.serverless_functions(sam[stage]).items()
                 for event in (function["Properties"].get("Events") or {}).values() if event["Type"] == "Schedule"}
    rules = {(target["Arn"]["Fn::GetAtt"][0], rule["Properties"]["ScheduleExpression"])
             for rule in template_checks.resources_of_type(template, "AWS::Events::Rule").values()
             if "ScheduleExpression" in rule["Properties"] for target in rule["Properties"]["Targets"]}
    assert rules == scheduled and len(rules) >= 3
    assert [template_checks.schedule_problem(expression) for _, expression in rules] == [None] * len(rules)
    assert rehearsals[stage].of(template_checks.SCHEDULES) == []


@pytest.mark.parametrize("expression, problem", [
    ("rate(1 minute)", None), ("rate(15 minutes)", None), ("rate(1 hour)", None), ("rate(2 days)", None),
    ("cron(0 12 * * ? *)", None), ("cron(15 10 ? * MON-FRI *)", None),
    ("rate(0 minutes)", "at least 1"), ("rate(1 minutes)", "singular"), ("rate(5 minute)", "plural"),
    ("rate(5 seconds)", "neither"), ("cron(bad)", "6 fields"), ("cron(0 12 * * * *)", "must be ?"),
    ("every 5 minutes", "neither"), ({"Ref": "Schedule"}, "not a literal"),
])
def test_a_schedule_expression_eventbridge_refuses_is_named_for_what_is_wrong(expression, problem):
    found = template_checks.schedule_problem(expression)
    assert (found is None) if problem is None else (problem in found), found


@pytest.mark.parametrize("stage", stages())
def test_no_reference_in_the_transformed_template_dangles(stage, rehearsals):
    assert rehearsals[stage].of(template_checks.REFERENCES) == []


def test_every_kind_of_dangling_reference_is_reported_where_it_is():
    template = {
        "Parameters": {"Stage": {"Type": "String"}},
        "Conditions": {"On": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}, "Both": {"Fn::And": [
            {"Condition": "On"}, {"Condition": "Gone"}]}},
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Fn::Sub": "q-${Stage}-${AWS::Region}"}}},
            "Fine": {"Type": "AWS::SNS::Topic", "DependsOn": "Queue", "Properties": {
                "DisplayName": {"Fn::Sub": ["${Queue.Arn} ${!Literal} ${Local}", {"Local": "x"}]},
                "Tags": [{"Key": "a", "Value": {"Fn::GetAtt": "Queue.Arn"}}]}},
            "Broken": {"Type": "AWS::SNS::Topic", "DependsOn": ["Queue", "Nowhere"], "Condition": "Missing",
                       "Properties": {"DisplayName": {"Fn::Sub": "${SyncQueueTypo.Arn}"},
                                      "TopicName": {"Fn::If": ["Absent", {"Ref": "NoParameter"}, "x"]},
                                      "Tags": [{"Key": "b", "Value": {"Fn::GetAtt": ["NoSuchQueue", "Arn"]}}]}},
        },
        "Outputs": {"Out": {"Value": {"Ref": "Ghost"}}},
    }
    found = {(f.where, f.message.split(",")[0]) for f in template_checks.check_references(template)}
    assert found == {
        ("Conditions/Both/Fn::And/1", "condition Gone"),
        ("Resources/Broken/DependsOn", "on Nowhere"),
        ("Resources/Broken/Condition", "Missing is not a condition of the template"),
        ("Resources/Broken/Properties/DisplayName", "Sub of ${SyncQueueTypo.Arn}"),
        ("Resources/Broken/Properties/TopicName", "If on condition Absent"),
        ("Resources/Broken/Properties/TopicName/Fn::If/1", "Ref to NoParameter"),
        ("Resources/Broken/Properties/Tags/0/Value", "GetAtt of NoSuchQueue"),
        ("Outputs/Out/Value", "Ref to Ghost"),
    }


def _placeholder_variables(findings):
    return {f.message.split(" ")[0] for f in findings}


def test_prod_is_held_back_by_exactly_the_placeholders_its_config_holds_saying_what_to_set(rehearsals):
    """While prod's config holds a placeholder (today STRIPE_CLIENT_ID, until
    the live platform's Connect client ID is written there), prod is not
    ready and the rehearsal says which value, where and what to set; once
    none is left, nothing holds prod back. Green either way."""
    rehearsal = rehearsals["prod"]
    held = template_checks.config_placeholders("prod")
    findings = rehearsal.of(template_checks.PLACEHOLDERS)
    assert _placeholder_variables(findings) == set(held)
    for finding in findings:
        variable = finding.message.split(" ")[0]
        assert finding.blocking
        assert finding.where == ".chalice/config.json stages.prod.environment_variables"
        assert held[variable] in finding.message and "set it to" in finding.message
    assert [f for f in rehearsal.blocking if f.check != template_checks.PLACEHOLDERS] == []
    assert rehearsal.ready == (not held)
    if "STRIPE_CLIENT_ID" in held:
        assert "Connect client ID (ca_" in rehearsal.report() and "prod fails the rehearsal" in rehearsal.report()


def test_a_placeholder_in_dev_is_a_note_that_does_not_hold_dev_back(rehearsals):
    rehearsal = rehearsals["dev"]
    assert _placeholder_variables(rehearsal.of(template_checks.PLACEHOLDERS)) == set(
        template_checks.config_placeholders("dev"))
    assert not [f for f in rehearsal.of(template_checks.PLACEHOLDERS) if f.blocking]
    assert rehearsal.ready, rehearsal.report()


def _with_variable(sam, config, stage, variable, value):
    sam, config = copy.deepcopy(sam), copy.deepcopy(config)
    for function in rehearse.serverless_functions(sam).values():
        function["Properties"]["Environment"]["Variables"][variable] = value
    config["stages"][stage]["environment_variables"][variable] = value
    return sam, config


def test_prod_with_its_live_values_set_is_ready_and_a_placeholder_anywhere_holds_it_back(sam, packaged):
    config = chalice_config()
    live_sam, live_config = sam["prod"], config
    for variable in template_checks.config_placeholders("prod"):
        live_sam, live_config = _with_variable(live_sam, live_config, "prod", variable, "ca_1LiveClientId")
    assert rehearse.rehearse(live_sam, "prod", packaged["prod"], REGION, config=live_config).ready

    broken_sam, broken_config = _with_variable(live_sam, live_config, "prod", "APP_BASE_URL",
                                               "https://REPLACE-ME.customerhub.example")
    broken_sam = copy.deepcopy(broken_sam)
    broken_sam["Resources"]["AlarmTopic"]["Properties"]["DisplayName"] = "placeholder"
    rehearsal = rehearse.rehearse(broken_sam, "prod", packaged["prod"], REGION, config=broken_config)
    assert {(f.where, f.blocking) for f in rehearsal.blocking} == {
        (".chalice/config.json stages.prod.environment_variables", True),
        ("Resources/AlarmTopic/Properties/DisplayName", True)}
    assert "APP_BASE_URL is the placeholder 'https://REPLACE-ME.customerhub.example' (in 7 function(s))" in (
        rehearsal.report())
    allowed = rehearse.rehearse(broken_sam, "prod", packaged["prod"], REGION, allow_placeholders=True,
                                config=broken_config)
    assert allowed.ready and len(allowed.of(template_checks.PLACEHOLDERS)) == 2


def test_the_command_fails_prod_while_it_holds_a_placeholder_unless_placeholders_are_allowed(packaged):
    out = io.StringIO()
    status = rehearse.main(["--stage", "prod", packaged["prod"], "--region", REGION], out=out)
    held = template_checks.config_placeholders("prod")
    assert status == (1 if held else 0), out.getvalue()
    for variable in held:
        assert "FAIL placeholders" in out.getvalue() and variable in out.getvalue()
    with open(packaged["prod"] + "/cloudformation.json") as f:
        assert "RestAPIapiStage" in json.load(f)["Resources"]

    allowed = io.StringIO()
    assert rehearse.main(["--stage", "prod", packaged["prod"], "--region", REGION, "--allow-placeholders"],
                         out=allowed) == 0, allowed.getvalue()
    assert "prod passes the rehearsal" in allowed.getvalue()


def test_the_command_names_a_stage_the_config_does_not_have(capsys):
    with pytest.raises(SystemExit) as exit:
        rehearse.main(["--stage", "staging"])
    assert exit.value.code == 2
    assert "no stage 'staging'" in capsys.readouterr().err


def test_a_function_without_code_is_reported_before_and_by_the_transform(sam, packaged):
    template = copy.deepcopy(sam["dev"])
    del template["Resources"]["CatchUp"]["Properties"]["CodeUri"]
    rehearsal = rehearse.rehearse(template, "dev", packaged["dev"], REGION)
    assert rehearsal.template is None and not rehearsal.ready
    assert [(f.check, f.where) for f in rehearsal.blocking] == [
        (rehearse.ARTIFACT, "Resources/CatchUp/Properties"), (rehearse.TRANSLATE, "Resources/CatchUp")]
    assert "not run, the transform refused the template" in rehearsal.report()


def test_the_template_translated_is_the_merge_of_infra_template_and_chalice(rehearsals):
    # A resource only infra/template.yaml has is in what CloudFormation gets.
    merged_only = set(load_template()["Resources"]) - {"RestAPI", "SyncWorker", "StripeEvents"}
    assert merged_only <= set(rehearsals["dev"].template["Resources"])
