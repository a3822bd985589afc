"""The project's OpenAPI document describes exactly the routes the app serves."""
from pathlib import Path

import yaml

from app import app

DOCUMENT = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())


def served():
    """HEAD is each read route's GET without its body, as HTTP has it: not
    an operation of its own."""
    return {(path, method.lower()) for path, methods in app.routes.items()
            for method in methods if method not in ("OPTIONS", "HEAD")}


def documented():
    return {(path, method) for path, operations in DOCUMENT["paths"].items() for method in operations}


def test_every_served_route_is_documented_and_nothing_else():
    assert served() == documented()


def test_every_documented_error_uses_the_contract_error_body():
    schema = DOCUMENT["components"]["schemas"]["Error"]
    assert schema["required"] == ["error"]
    assert schema["properties"]["error"]["required"] == ["code", "message"]
