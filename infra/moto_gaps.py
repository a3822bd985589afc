"""What moto 5.2 gets wrong about this stack, mended in one place (MotoGaps)
and only where the stack needs it:

- AWS::ApiGateway::RestApi ignores `Body`, so the API has no method and the
  Deployment fails ("The REST API doesn't contain any methods"): the body is
  imported (routes, methods, integrations, gateway responses, binary media
  types) as API Gateway imports a definition.
- `Ref` to an AWS::Events::EventBus gives moto's object, not the bus's name
  (the AccessEventBusName output, the StripeEventRule's EventBusName).
- A bus named by its name is taken to be named by what follows its last
  `/`, so no rule can go on a partner bus (aws.partner/stripe.com/…, the
  StripeEventBus): a name stays whole, an ARN's name is what follows
  `:event-bus/`.
- An event source mapping moto creates runs the function itself, in Docker,
  on every message sent to the queue and every stream record: the messages
  would be consumed and the records dropped before the rehearsal's pollers
  (infra/lambda_service.py's QueueTrigger and StreamTrigger, standing in
  for Lambda's) see them. The mapping stays (listed, read back), detached
  from moto's invocation.
"""
import contextlib
from typing import Any, Dict, Iterator, Optional

from moto.apigateway.models import RestAPI, apigateway_backends
from moto.awslambda.models import LambdaBackend
from moto.dynamodb.models import dynamodb_backends
from moto.events.models import EventBus, EventsBackend
from moto.sqs.models import sqs_backends

_ORIGINAL_REST_API = RestAPI.__dict__["create_from_cloudformation_json"].__func__
_ORIGINAL_MAPPING = LambdaBackend.create_event_source_mapping
_ORIGINAL_BUS_NAME = EventsBackend._normalize_event_bus_arn


def _rest_api_with_body(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    api = _ORIGINAL_REST_API(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    body = cloudformation_json["Properties"].get("Body")
    if isinstance(body, dict):
        backend = apigateway_backends[account_id][region_name]
        # moto imports OpenAPI 3 only, refusing a document that names its
        # version `swagger`; the paths it reads (methods, their
        # x-amazon-apigateway-integration) are the same in Chalice's swagger 2.0.
        paths = {name: value for name, value in body.items() if name != "swagger"}
        backend.put_rest_api(api.id, paths, fail_on_warnings=False, mode="overwrite")
        for response_type, response in (body.get("x-amazon-apigateway-gateway-responses") or {}).items():
            backend.put_gateway_response(api.id, response_type, response.get("statusCode"),
                                         response.get("responseParameters"), response.get("responseTemplates"))
        api.binaryMediaTypes = list(body.get("x-amazon-apigateway-binary-media-types") or [])
    return api


def _bus_name(bus: EventBus) -> str:
    return bus.name


def _bus_named(backend: EventsBackend, name_or_arn: Optional[str]) -> str:
    if name_or_arn is None:
        return "default"
    if name_or_arn.startswith("arn:"):
        return name_or_arn.split(":event-bus/", 1)[1]
    return name_or_arn


def _mapping_left_to_its_poller(backend: LambdaBackend, spec: Dict[str, Any]):
    mapping = _ORIGINAL_MAPPING(backend, spec)
    sources = list(sqs_backends[backend.account_id][backend.region_name].queues.values())
    sources += list(dynamodb_backends[backend.account_id][backend.region_name].tables.values())
    for source in sources:
        attached = getattr(source, "lambda_event_source_mappings", {})
        for key in [key for key, found in attached.items() if found is mapping]:
            del attached[key]
    return mapping


class MotoGaps:
    """The mends above, in place inside `installed()` (module docstring)."""

    @staticmethod
    def install() -> None:
        RestAPI.create_from_cloudformation_json = classmethod(_rest_api_with_body)
        EventBus.physical_resource_id = property(_bus_name)
        EventsBackend._normalize_event_bus_arn = _bus_named
        LambdaBackend.create_event_source_mapping = _mapping_left_to_its_poller

    @staticmethod
    def uninstall() -> None:
        RestAPI.create_from_cloudformation_json = classmethod(_ORIGINAL_REST_API)
        if "physical_resource_id" in EventBus.__dict__:
            del EventBus.physical_resource_id
        EventsBackend._normalize_event_bus_arn = _ORIGINAL_BUS_NAME
        LambdaBackend.create_event_source_mapping = _ORIGINAL_MAPPING

    @staticmethod
    def installed_now() -> bool:
        return LambdaBackend.create_event_source_mapping is _mapping_left_to_its_poller

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        was = cls.installed_now()
        cls.install()
        try:
            yield
        finally:
            if not was:
                cls.uninstall()

    @classmethod
    @contextlib.contextmanager
    def suspended(cls) -> Iterator[None]:
        """moto as it is, inside the block: what shows that a gap is still there."""
        was = cls.installed_now()
        cls.uninstall()
        try:
            yield
        finally:
            if was:
                cls.install()
