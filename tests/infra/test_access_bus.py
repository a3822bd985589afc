"""The access announcements' bus: CustomerHub acts on an AccessGranted it
hears, so a deployed stage puts them on a bus of its own, on which only
announce_access's role may put (on the account's default bus any principal
of the account could forge one)."""
import pytest

from infra import rehearse
from infra.project import chalice_config, stage_environment, stages
from tests import infra_map
from tests.iam_check import IAM_CHECK

BUS = "AccessEventBus"
BUS_ARN = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/stripe-connector-${Stage}-access"


def bus():
    return infra_map.template()["Resources"][BUS]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """The dev stage as `make package` packages it: Chalice's roles beside the template's resources."""
    directory = str(tmp_path_factory.mktemp("packaged-dev"))
    rehearse.package("dev", directory)
    return rehearse.load_packaged(directory)


@pytest.mark.parametrize("stage", stages())
def test_each_stage_announces_on_the_template_bus_named_for_the_stage(stage):
    name = stage_environment(stage)["ACCESS_EVENT_BUS"]
    assert name == "stripe-connector-%s-access" % stage
    assert infra_map.bus_resources(stage)[name] == BUS


def test_only_a_local_run_announces_on_the_default_bus():
    assert chalice_config()["environment_variables"]["ACCESS_EVENT_BUS"] == "default"
    for stage in chalice_config()["stages"].values():
        assert stage["environment_variables"]["ACCESS_EVENT_BUS"] != "default"


def test_the_bus_denies_putting_events_to_every_principal_but_announce_access_role():
    policy = bus()["Properties"]["Policy"]
    assert policy["Version"] == "2012-10-17"
    # One statement, a Deny: no principal of another account is allowed,
    # and no IAM policy of this account can outweigh it.
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] in ("events:PutEvents", ["events:PutEvents"])
    assert statement["Resource"] == {"Fn::Sub": BUS_ARN}
    role = infra_map.LOGICAL_IDS["announce_access"] + "Role"
    assert statement["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": [role, "Arn"]}}}


def test_the_role_the_bus_lets_put_is_the_one_chalice_gives_announce_access(packaged):
    resources = packaged["Resources"]
    [statement] = resources[BUS]["Properties"]["Policy"]["Statement"]
    role = statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]["Fn::GetAtt"][0]
    function = resources[infra_map.LOGICAL_IDS["announce_access"]]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    assert resources[role]["Type"] == "AWS::IAM::Role"
    # No other function runs with that role.
    others = [name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"
              and r["Properties"].get("Role") == {"Fn::GetAtt": [role, "Arn"]}]
    assert others == [infra_map.LOGICAL_IDS["announce_access"]]


def test_announce_access_may_put_events_on_the_access_bus_and_no_other():
    events = {(action, resource) for action, resource in infra_map.policy("announce_access").grants
              if action.startswith("events:")}
    assert events == {("events:PutEvents", ("bus", "stripe-connector-${Stage}-access"))}
    assert infra_map.policy("announce_access").document["Statement"][-1]["Resource"] == [{"Fn::Sub": BUS_ARN}]
    assert not infra_map.policy("announce_access").allows("events:PutEvents", ("bus", "default"))


def test_the_stack_outputs_the_bus_name_and_arn():
    outputs = infra_map.template()["Outputs"]
    assert outputs["AccessEventBusName"]["Value"] == {"Ref": BUS}
    assert outputs["AccessEventBusArn"]["Value"] == {"Fn::GetAtt": [BUS, "Arn"]}


def test_the_iam_check_holds_the_local_default_bus_to_the_stage_bus_and_any_other_bus_to_itself(monkeypatch):
    monkeypatch.delenv("ACCESS_EVENT_BUS", raising=False)
    stage_bus = ("bus", stage_environment(infra_map.STAGE)["ACCESS_EVENT_BUS"])
    assert IAM_CHECK.bus("default") == stage_bus
    assert IAM_CHECK.bus("arn:aws:events:us-east-1:123456789012:event-bus/default") == stage_bus
    assert IAM_CHECK.bus("someone-elses") == ("bus", "someone-elses")
    assert not infra_map.policy("announce_access").allows("events:PutEvents", IAM_CHECK.bus("someone-elses"))
    monkeypatch.setenv("ACCESS_EVENT_BUS", "local-access")
    assert IAM_CHECK.bus("local-access") == stage_bus
    assert IAM_CHECK.bus("default") == ("bus", "default")
