"""The request check: every API and OAuth request is held against the
TypedDict its stripe-python client method takes, before a handler sees it.

Those TypedDicts (``stripe.params`` and ``stripe.OAuth``) are generated from
Stripe's OpenAPI spec, so they say which parameters each endpoint knows,
which are required, their types and enums, and which may be unset with "".
They are read from the pinned library the first time they are needed (or when
the server starts); nothing else of stripe-python is used here, and importing
the package imports no stripe.

A refused request gets Stripe's own answer: 400 ``invalid_request_error``
with Stripe's code and message and the parameter in Stripe's bracket form
(``features[subscription_cancel][mode]``), or an OAuth error on /oauth/*."""
import decimal
import importlib
import re
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple

from local.stripe_sandbox.wire import Request, Response, oauth_error, stripe_error


@dataclass(frozen=True)
class RouteParams:
    """What a route takes: the client's TypedDict (a dotted name in the pinned
    library), and the top-level params its handler carries out (None: all)."""
    typed_dict: str
    handled: Optional[Tuple[str, ...]] = None
    # Params Stripe documents that the library sends another way.
    extra: Tuple[str, ...] = ()


_PAGING = ("limit", "starting_after", "ending_before")
_LIST = _PAGING + ("expand",)
# Stripe's curl examples for /oauth/token send the secret key as the
# client_secret param; stripe-python sends it in the Authorization header, so
# its TypedDicts leave it out.
_OAUTH_EXTRA = ("client_secret",)

# By route handler (server.ROUTES): a test keeps every api and oauth route in here.
ROUTE_PARAMS: Dict[str, RouteParams] = {
    "_oauth_token": RouteParams("stripe.OAuth.OAuthTokenParams", ("grant_type", "code", "refresh_token"),
                                _OAUTH_EXTRA),
    "_oauth_deauthorize": RouteParams("stripe.OAuth.OAuthDeauthorizeParams", extra=_OAUTH_EXTRA),
    "_api_current_account": RouteParams("stripe.params.AccountRetrieveCurrentParams"),
    "_api_retrieve_account": RouteParams("stripe.params.AccountRetrieveParams"),
    "_api_list_events": RouteParams("stripe.params.EventListParams"),
    "_api_retrieve_event": RouteParams("stripe.params.EventRetrieveParams"),
    "_api_list_webhook_endpoints": RouteParams("stripe.params.WebhookEndpointListParams"),
    "_api_create_webhook_endpoint": RouteParams("stripe.params.WebhookEndpointCreateParams"),
    "_api_retrieve_webhook_endpoint": RouteParams("stripe.params.WebhookEndpointRetrieveParams"),
    "_api_update_webhook_endpoint": RouteParams("stripe.params.WebhookEndpointUpdateParams"),
    "_api_delete_webhook_endpoint": RouteParams("stripe.params.WebhookEndpointDeleteParams"),
    "_api_list_customers": RouteParams("stripe.params.CustomerListParams", _LIST + ("created", "email")),
    "_api_create_customer": RouteParams("stripe.params.CustomerCreateParams", ("email", "metadata", "name", "expand")),
    "_api_retrieve_customer": RouteParams("stripe.params.CustomerRetrieveParams"),
    "_api_list_portal_configurations": RouteParams("stripe.params.billing_portal.ConfigurationListParams",
                                                   _LIST + ("active",)),
    "_api_create_portal_configuration": RouteParams("stripe.params.billing_portal.ConfigurationCreateParams"),
    "_api_retrieve_portal_configuration": RouteParams("stripe.params.billing_portal.ConfigurationRetrieveParams"),
    "_api_update_portal_configuration": RouteParams("stripe.params.billing_portal.ConfigurationUpdateParams"),
    "_api_create_portal_session": RouteParams("stripe.params.billing_portal.SessionCreateParams",
                                              ("customer", "configuration", "return_url", "locale", "expand")),
    "_api_retrieve_product": RouteParams("stripe.params.ProductRetrieveParams"),
    "_api_create_product": RouteParams("stripe.params.ProductCreateParams",
                                       ("name", "metadata", "id", "description", "active", "expand")),
    "_api_list_subscriptions": RouteParams("stripe.params.SubscriptionListParams",
                                           _LIST + ("status", "customer", "price", "created")),
    "_api_retrieve_subscription": RouteParams("stripe.params.SubscriptionRetrieveParams"),
    # Proration is accepted and has no effect: the sandbox bills no prorations.
    "_api_update_subscription": RouteParams("stripe.params.SubscriptionUpdateParams", (
        "cancel_at_period_end", "cancel_at", "metadata", "expand", "proration_behavior", "proration_date",
        "cancellation_details")),
    "_api_cancel_subscription": RouteParams("stripe.params.SubscriptionCancelParams"),
    "_api_list_subscription_items": RouteParams("stripe.params.SubscriptionItemListParams"),
    "_api_list_invoices": RouteParams("stripe.params.InvoiceListParams", _PAGING + (
        "subscription", "status", "customer", "created", "collection_method")),
    "_api_retrieve_invoice": RouteParams("stripe.params.InvoiceRetrieveParams", ()),
}


class ParamError(Exception):
    def __init__(self, message: str, param: str, code: Optional[str] = None, fits: bool = True,
                 enum: bool = False):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code
        # fits: the value had the shape the type wants and failed on its content.
        self.fits, self.enum = fits, enum


def check_request(handler: str, kind: str, request: Request) -> Optional[Response]:
    """None when the request's params fit its route, else the answer that refuses it."""
    route = ROUTE_PARAMS[handler]
    try:
        check_params(route, request.params)
    except ParamError as exc:
        if kind == "oauth":
            error = "unsupported_grant_type" if exc.param == "grant_type" and exc.enum else "invalid_request"
            return oauth_error(400, error, exc.message)
        return stripe_error(400, exc.message, code=exc.code, param=exc.param)
    return None


def check_params(route: RouteParams, params: Dict[str, Any]) -> None:
    typed_dict = resolve(route.typed_dict)
    _check_fields(params, typed_dict, [], route.extra)
    if route.handled is not None:
        for name in params:
            if name not in route.handled and name not in route.extra:
                raise ParamError("Stripe accepts %s here, but the sandbox does not carry it out: implement it "
                                 "in the sandbox, or leave it out." % name, name)


def load_typed_dicts() -> None:
    """Read every route's TypedDicts now, so no request waits for it."""
    for route in ROUTE_PARAMS.values():
        _walk_types(resolve(route.typed_dict), set())


@lru_cache(maxsize=None)
def resolve(dotted: str) -> type:
    module_name, _, rest = dotted.partition(".")
    module = importlib.import_module(module_name)
    parts = rest.split(".")
    # stripe.params.billing_portal.X: import the longest module prefix.
    while len(parts) > 1:
        try:
            module = importlib.import_module(module.__name__ + "." + parts[0])
        except ImportError:
            break
        parts = parts[1:]
    target: Any = module
    for part in parts:
        target = getattr(target, part)
    return target


# ------------------------------------------------------------------ the walk

def _name(path: Sequence[str]) -> str:
    return path[0] + "".join("[%s]" % part for part in path[1:])


def _is_mapping(origin: Any) -> bool:
    # UntypedStripeObject[str] is how the library spells metadata besides Dict[str, str].
    return origin is dict or getattr(origin, "__name__", "") == "UntypedStripeObject"


def _is_typed_dict(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "__required_keys__")


@lru_cache(maxsize=None)
def _fields(typed_dict: type) -> Tuple[Dict[str, Any], frozenset]:
    import stripe  # the pinned library's types only; see the module's docstring

    # The request options (api_key, stripe_account, ...) every *Params
    # inherits become headers, never form params; their annotations need
    # names that module imports only for type checkers.
    hints = typing.get_type_hints(typed_dict, include_extras=True,
                                  localns={"StripeContext": stripe.StripeContext, "Mapping": typing.Mapping})
    if stripe.RequestOptions in getattr(typed_dict, "__orig_bases__", ()):
        for option in stripe.RequestOptions.__annotations__:
            hints.pop(option, None)
    return hints, frozenset(k for k in typed_dict.__required_keys__ if k in hints)


def _check_fields(value: Dict[str, Any], typed_dict: type, path: List[str], extra: Sequence[str] = ()) -> None:
    hints, required = _fields(typed_dict)
    for key in value:
        if key not in hints and key not in extra:
            name = _name(path + [key])
            raise ParamError("Received unknown parameter: %s" % name, name, "parameter_unknown")
    for key in sorted(required):
        if key not in value:
            name = _name(path + [key])
            raise ParamError("Missing required param: %s." % name, name, "parameter_missing")
    for key, item in value.items():
        if key in hints:
            _check(item, hints[key], path + [key])


def _options(annotation: Any) -> List[Any]:
    """A type's alternatives, wrappers (NotRequired, Annotated) and None taken off."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [option for arg in typing.get_args(annotation) for option in _options(arg)]
    if origin in (typing.NotRequired, typing.Required, typing.Annotated):
        return _options(typing.get_args(annotation)[0])
    if annotation is type(None):
        return []
    return [annotation]


def _literals(option: Any) -> Tuple[str, ...]:
    if typing.get_origin(option) is not typing.Literal:
        return ()
    return tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in typing.get_args(option))


def _check(value: Any, annotation: Any, path: List[str]) -> None:
    options = _options(annotation)
    name = _name(path)
    if value == "":
        if any("" in _literals(option) for option in options):
            return
        raise ParamError("You passed an empty string for '%s'. We assume empty values are an attempt to unset a "
                         "parameter; however '%s' cannot be unset. You should remove '%s' from your request or "
                         "supply a non-empty value." % (name, name, name), name, "parameter_invalid_empty")
    # The library widens every enum with `str`, so that values Stripe adds
    # later still type-check; Stripe itself refuses a value outside it.
    enum = [v for option in options for v in _literals(option) if v != ""]
    if enum:
        options = [option for option in options if option is not str]
    options = [option for option in options if _literals(option) != ("",)]
    if not options:
        raise ParamError("Invalid %s: it can only be unset, with an empty string" % name, name)
    errors = []
    for option in sorted(options, key=lambda o: not _literals(o)):
        try:
            _check_one(value, option, path, enum)
            return
        except ParamError as exc:
            errors.append(exc)
    # An alternative the value had the shape of says best what is wrong with it.
    raise next((e for e in errors if e.fits), errors[0])


def _check_one(value: Any, option: Any, path: List[str], enum: List[str]) -> None:
    name = _name(path)
    origin = typing.get_origin(option) or option
    args = typing.get_args(option)
    if origin is typing.Literal:
        if not isinstance(value, str) or value not in _literals(option):
            raise ParamError("Invalid %s: must be one of %s" % (name, _one_of(enum)), name,
                             fits=isinstance(value, str), enum=True)
    elif option is str:
        if not isinstance(value, str):
            raise ParamError("Invalid string: %s" % _shown(value), name, fits=False)
    elif option is bool:
        if value not in ("true", "false"):
            raise ParamError("Invalid boolean: %s" % _shown(value), name, fits=isinstance(value, str))
    elif option is int:
        if not (isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value)):
            raise ParamError("Invalid integer: %s" % _shown(value), name, "parameter_invalid_integer",
                             fits=isinstance(value, str))
    elif option in (float, decimal.Decimal):
        if not (isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value)):
            raise ParamError("Invalid decimal: %s" % _shown(value), name, fits=isinstance(value, str))
    elif origin is list:
        if not isinstance(value, list):
            raise ParamError("Invalid array", name, fits=False)
        for index, item in enumerate(value):
            _check(item, args[0], path + [str(index)])
    elif _is_mapping(origin):
        if not isinstance(value, dict):
            raise ParamError("Invalid hash", name, fits=False)
        for key, item in value.items():
            # A metadata key set to "" is how Stripe deletes that key.
            if item != "":
                _check(item, args[-1], path + [key])
    elif _is_typed_dict(option):
        if not isinstance(value, dict):
            raise ParamError("Invalid hash", name, fits=False)
        _check_fields(value, option, path)
    else:
        raise TypeError("the params check does not know the type %r (at %s)" % (option, name))


def _one_of(values: Sequence[str]) -> str:
    if len(values) <= 2:
        return " or ".join(values)
    return "%s, or %s" % (", ".join(values[:-1]), values[-1])


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else "a %s" % ("hash" if isinstance(value, dict) else "list")


def _walk_types(typed_dict: type, seen: set) -> None:
    """Every TypedDict under this one read once, and every type checked known."""
    if typed_dict in seen:
        return
    seen.add(typed_dict)
    hints, _ = _fields(typed_dict)
    pending = [option for annotation in hints.values() for option in _options(annotation)]
    while pending:
        option = pending.pop()
        if _is_typed_dict(option):
            _walk_types(option, seen)
        elif typing.get_origin(option) is list or _is_mapping(typing.get_origin(option)):
            pending.extend(o for arg in typing.get_args(option) for o in _options(arg))
        elif not (option in (str, bool, int, float, decimal.Decimal) or typing.get_origin(option) is typing.Literal):
            raise TypeError("the params check does not know the type %r in %s" % (option, typed_dict.__name__))
