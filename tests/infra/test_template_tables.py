"""One definition of the tables: the template declares the tables the
PynamoDB models create locally (keys, attribute types, indexes, stream, TTL),
under the names each stage's configuration gives them."""
import pytest
from pynamodb.attributes import TTLAttribute

from chalicelib import models
from infra.project import stage_environment, stages, substitute
from tests import infra_map


def keys(schema):
    return {entry["KeyType"]: entry["AttributeName"] for entry in schema}


def definitions(entries):
    return {entry["AttributeName"]: entry["AttributeType"] for entry in entries}


def projection(value):
    found = {"ProjectionType": value["ProjectionType"]}
    if value.get("NonKeyAttributes"):
        found["NonKeyAttributes"] = sorted(value["NonKeyAttributes"])
    return found


def declared(logical):
    return infra_map.template()["Resources"][logical]["Properties"]


@pytest.mark.parametrize("model", models.MODELS, ids=lambda model: model.__name__)
def test_the_template_declares_each_models_table_with_its_keys_types_indexes_stream_and_ttl(model):
    logical = infra_map.model_tables()[model]
    table = declared(logical)
    schema = model._get_schema()
    assert keys(table["KeySchema"]) == keys(schema["key_schema"])
    assert definitions(table["AttributeDefinitions"]) == definitions(schema["attribute_definitions"])
    assert {index["IndexName"]: (keys(index["KeySchema"]), projection(index["Projection"]))
            for index in table.get("GlobalSecondaryIndexes", [])} == {
        index["index_name"]: (keys(index["key_schema"]), projection(index["projection"]))
        for index in schema["global_secondary_indexes"]}
    assert table.get("LocalSecondaryIndexes", []) == schema["local_secondary_indexes"] == []
    stream = getattr(model.Meta, "stream_view_type", None)
    assert table.get("StreamSpecification") == ({"StreamViewType": stream} if stream else None)
    ttl = [name for name, attribute in model.get_attributes().items() if isinstance(attribute, TTLAttribute)]
    assert table.get("TimeToLiveSpecification") == (
        {"AttributeName": ttl[0], "Enabled": True} if ttl else None)
    assert table["BillingMode"] == model.Meta.billing_mode == "PAY_PER_REQUEST"


def test_every_table_in_the_template_is_a_models_table():
    assert sorted(infra_map.model_tables().values()) == sorted(infra_map.resources_of_type("AWS::DynamoDB::Table"))
    assert len(infra_map.model_tables()) == len(models.MODELS)


@pytest.mark.parametrize("stage", stages())
def test_each_stage_configures_the_table_names_the_template_gives_that_stage(stage):
    environment = stage_environment(stage)
    settings = infra_map.table_settings()
    assert sorted(settings) == sorted(name for name in environment if name.endswith("_TABLE"))
    named = {substitute(declared(logical)["TableName"], {"Stage": stage})
             for logical in infra_map.resources_of_type("AWS::DynamoDB::Table")}
    assert {environment[variable] for variable in settings} == named


@pytest.mark.parametrize("logical", sorted(infra_map.resources_of_type("AWS::DynamoDB::Table")))
def test_every_table_is_on_demand_recoverable_and_outlives_its_stack(logical):
    resource = infra_map.template()["Resources"][logical]
    assert resource["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert resource["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
    assert resource["Properties"]["DeletionProtectionEnabled"] is True
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
