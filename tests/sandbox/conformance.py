"""Does a JSON answer match the stripe-python class that will read it?

stripe-python's classes are generated from Stripe's OpenAPI spec: a field
annotated without ``Optional`` is one Stripe always sends, with a value of
that type; an ``Optional`` one may be null, and some of those (includable
fields such as a customer's ``sources``) are left out unless asked for. So an
answer conforms when every non-optional field is present and typed, every
optional field that is present is typed or null, and no field is one the
class does not declare.

``violations(answer, cls)`` lists what does not conform, one line per
problem, each naming the field's path. It walks nested classes (their
annotations, read with ``typing.get_type_hints``), lists, ``ListObject[...]``,
expandable fields (an id or the expanded object) and metadata-like maps.

Two readings are stricter or looser than the annotations, on purpose:

- ``Union[Literal[...], str]``: stripe-python admits any string so that an
  old library survives a new enum value; an answer from a stand-in pinned to
  one API version has no such excuse, so a value outside the literals is
  reported.
- A deleted object (``"deleted": true``) is Stripe's ``deleted_*`` schema:
  only ``id``, ``object`` and ``deleted`` are required of it.
"""
import ast
import decimal
import inspect
import sys
from functools import lru_cache
from typing import Any, ClassVar, Dict, List, Tuple, Union, get_args, get_origin, get_type_hints

from typing_extensions import Literal

import stripe
from stripe._list_object import ListObject
from stripe._object_classes import get_object_class
from stripe._stripe_object import StripeObject, UntypedStripeObject

_NONE = type(None)


@lru_cache(maxsize=None)
def _module_namespace(module_name: str) -> Dict[str, Any]:
    """The module's globals plus the names it imports only for type checkers
    (``if TYPE_CHECKING:``), which its string annotations refer to."""
    module = sys.modules[module_name]
    namespace = dict(vars(module))
    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            imports = [stmt for stmt in node.body if isinstance(stmt, (ast.Import, ast.ImportFrom))]
            exec(compile(ast.Module(body=imports, type_ignores=[]), module_name, "exec"), namespace)
    return namespace


@lru_cache(maxsize=None)
def fields_of(cls: type) -> Dict[str, Any]:
    """The API fields a class declares, by name: its annotations and its
    bases', less private names and class variables."""
    namespace: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ in sys.modules and klass.__module__.startswith("stripe"):
            namespace.update(_module_namespace(klass.__module__))
    hints = get_type_hints(cls, globalns=namespace)
    return {name: hint for name, hint in hints.items()
            if not name.startswith("_") and get_origin(hint) is not ClassVar}


def is_optional(hint: Any) -> bool:
    return get_origin(hint) is Union and _NONE in get_args(hint)


def class_for(object_name: str) -> type:
    """The stripe-python class for an answer's ``object`` value."""
    if object_name == "list":
        return ListObject
    cls = get_object_class("V1", object_name)
    if cls is StripeObject:
        raise KeyError("stripe-python has no class for object %r" % object_name)
    return cls


def violations(answer: Any, cls: type, path: str = "") -> List[str]:
    """What in answer does not conform to cls; empty when all does."""
    return _check(answer, cls, path or _name(cls))


def event_violations(event: Any) -> List[str]:
    """An event checked as an Event, and its data.object as the object its
    ``object`` names; previous_attributes belongs to update events only."""
    found = violations(event, stripe.Event)
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return found
    obj = data["object"]
    try:
        cls = class_for(obj.get("object"))
    except KeyError as exc:
        return found + ["Event.data.object: %s" % exc.args[0]]
    found += violations(obj, cls, "Event.data.object")
    if "previous_attributes" in data and not str(event.get("type", "")).endswith(".updated"):
        found.append("Event.data.previous_attributes: sent on %s, which is not an update" % event.get("type"))
    return found


# --------------------------------------------------------------------------

def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name(hint: Any) -> str:
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is Union:
        inner = [a for a in args if a is not _NONE]
        named = _name(inner[0]) if len(inner) == 1 else "Union[%s]" % ", ".join(map(_name, inner))
        return "Optional[%s]" % named if _NONE in args else named
    if origin is Literal:
        return "Literal[%s]" % ", ".join(map(repr, args))
    if origin is not None:
        base = {list: "List", dict: "Dict"}.get(origin) or getattr(origin, "__qualname__", str(origin))
        return "%s[%s]" % (base, ", ".join(map(_name, args)))
    return "Any" if hint is Any else getattr(hint, "__qualname__", None) or str(hint)


def _check(value: Any, hint: Any, path: str) -> List[str]:
    if hint is Any:
        return []
    origin = get_origin(hint)
    if origin is Union:
        return _check_union(value, get_args(hint), path)
    if origin is Literal:
        return [] if _among(value, get_args(hint)) else ["%s: %s is not one of %s" % (
            path, _describe(value), ", ".join(map(repr, get_args(hint))))]
    if value is None:
        return ["%s: null, but %s is not optional" % (path, _name(hint))]
    if origin in (list, List):
        (item_hint,) = get_args(hint) or (Any,)
        if not isinstance(value, list):
            return ["%s: expected a list, got %s" % (path, _describe(value))]
        return [v for i, item in enumerate(value) for v in _check(item, item_hint, "%s[%d]" % (path, i))]
    if origin is ListObject:
        (item_hint,) = get_args(hint)
        return _check_list_object(value, item_hint, path)
    if origin in (dict, Dict) or origin is UntypedStripeObject:
        value_hint = get_args(hint)[-1] if get_args(hint) else Any
        if not isinstance(value, dict):
            return ["%s: expected an object, got %s" % (path, _describe(value))]
        return [v for key, item in value.items() for v in _check(item, value_hint, "%s.%s" % (path, key))]
    if hint is ListObject:
        return _check_list_object(value, Any, path)
    if inspect.isclass(hint) and issubclass(hint, StripeObject):
        return _check_object(value, hint, path)
    return _check_scalar(value, hint, path)


def _among(value: Any, literals: Any) -> bool:
    # By type as well: True == 1, but a Literal[True] field holding 1 is wrong.
    return any(type(value) is type(literal) and value == literal for literal in literals)


def _check_scalar(value: Any, hint: Any, path: str) -> List[str]:
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is decimal.Decimal:
        # stripe-python's "decimal_string" encoding: a decimal in a JSON string.
        ok = isinstance(value, str) and _is_decimal(value)
    else:
        return ["%s: the checker does not know the type %s" % (path, _name(hint))]
    return [] if ok else ["%s: expected %s, got %s" % (path, _name(hint), _describe(value))]


def _is_decimal(text: str) -> bool:
    try:
        decimal.Decimal(text)
    except decimal.InvalidOperation:
        return False
    return True


def _check_union(value: Any, options: Tuple[Any, ...], path: str) -> List[str]:
    expected = _name(Union[options])
    if value is None:
        return [] if _NONE in options else ["%s: null, but %s is not optional" % (path, expected)]
    options = tuple(o for o in options if o is not _NONE)
    literals = [v for o in options if get_origin(o) is Literal for v in get_args(o)]
    if _among(value, literals):
        return []
    if literals and (isinstance(value, str) or all(get_origin(o) is Literal for o in options)):
        # Union[Literal[...], str] included: see the module's docstring.
        return ["%s: %s is not one of %s" % (path, _describe(value), ", ".join(map(repr, literals)))]
    if isinstance(value, dict):
        classes = [o for o in options if inspect.isclass(o) and issubclass(o, StripeObject)]
        named = [c for c in classes if getattr(c, "OBJECT_NAME", None) == value.get("object")]
        if len(named) == 1:
            return _check(value, named[0], path)
        if len(classes) == 1:
            return _check(value, classes[0], path)
        if classes:
            return ["%s: object %r is none of %s" % (path, value.get("object"), ", ".join(map(_name, classes)))]
    candidates = [o for o in options if get_origin(o) is not Literal and _same_kind(value, o)]
    for option in candidates:
        if not _check(value, option, path):
            return []
    if len(candidates) == 1 and isinstance(value, (dict, list)):
        # The one shape it could be: its own complaints say more.
        return _check(value, candidates[0], path)
    return ["%s: expected %s, got %s" % (path, expected, _describe(value))]


def _same_kind(value: Any, hint: Any) -> bool:
    """Whether value is the JSON kind hint asks for, so that hint's own
    complaints about it are the useful ones."""
    origin = get_origin(hint) or hint
    if isinstance(value, list):
        return origin in (list, List)
    if isinstance(value, dict):
        return inspect.isclass(origin) and (origin in (dict, Dict) or issubclass(origin, StripeObject))
    return not (origin in (list, List, dict, Dict) or (inspect.isclass(origin) and issubclass(origin, StripeObject)))


def _check_list_object(value: Any, item_hint: Any, path: str) -> List[str]:
    if not isinstance(value, dict):
        return ["%s: expected a list object, got %s" % (path, _describe(value))]
    found = [] if value.get("object") == "list" else ["%s.object: %s, not 'list'" % (path, _describe(
        value.get("object")))]
    expected = {"data": List[item_hint], "has_more": bool, "url": str}
    for name, hint in expected.items():
        if name not in value:
            found.append("%s.%s: missing" % (path, name))
        else:
            found += _check(value[name], hint, "%s.%s" % (path, name))
    found += ["%s.%s: not a field of a list object" % (path, name)
              for name in value if name not in expected and name != "object"]
    return found


def _check_object(value: Any, cls: type, path: str) -> List[str]:
    if not isinstance(value, dict):
        return ["%s: expected a %s object, got %s" % (path, cls.__qualname__, _describe(value))]
    fields = fields_of(cls)
    if value.get("deleted") is True and "deleted" in fields:
        required = {"id", "object", "deleted"} & set(fields)
    else:
        required = {name for name, hint in fields.items() if not is_optional(hint)}
    found = ["%s.%s: missing (%s)" % (path, name, _name(fields[name]))
             for name in sorted(required) if name not in value]
    for name, item in value.items():
        if name not in fields:
            found.append("%s.%s: not a field of %s" % (path, name, cls.__qualname__))
        else:
            found += _check(item, fields[name], "%s.%s" % (path, name))
    return found
