"""The methods API Gateway has for each route, as the packaged stage has
them: API Gateway answers a method a route lacks itself (its 404
`not_found`), so the deployed API answers only what the swagger names."""
import pytest

from app import app
from infra.project import stages


def methods_of(sam):
    paths = sam["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    return {path: {method.upper(): operation for method, operation in operations.items()}
            for path, operations in paths.items()}


@pytest.mark.parametrize("stage", stages())
def test_every_read_route_answers_head_through_the_function_as_its_get(stage, sam):
    """API Gateway has no HEAD of its own for a GET: a monitor's HEAD would
    be its 404 while the local server answers it as the GET."""
    deployed = methods_of(sam[stage])
    reads = sorted(path for path, methods in app.routes.items() if "GET" in methods)
    assert reads
    for path in reads:
        assert "HEAD" in deployed[path], path
        head = deployed[path]["HEAD"]["x-amazon-apigateway-integration"]
        get = deployed[path]["GET"]["x-amazon-apigateway-integration"]
        assert (head["type"], head["uri"]) == (get["type"], get["uri"]) == ("aws_proxy", get["uri"]), path


@pytest.mark.parametrize("stage", stages())
def test_the_deployed_api_has_exactly_the_apps_methods(stage, sam):
    deployed = {(path, method) for path, methods in methods_of(sam[stage]).items() for method in methods}
    served = {(path, method) for path, methods in app.routes.items() for method in methods}
    assert deployed == served
