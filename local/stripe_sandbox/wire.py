"""Stripe's wire format: the nested form encoding, requests and responses,
Stripe's error bodies (and the OAuth ones), the HTML page frame, and the
parameter checks and cursor pagination every list shares."""
import copy
import html
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl

API_VERSION = "2026-10-28.endive"
DEFAULT_PAGE_LIMIT = 10
MAX_PAGE_LIMIT = 100

_ALNUM = string.ascii_letters + string.digits


def _random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def mask_key(key: str) -> str:
    """How Stripe quotes a key back: the prefix and last four characters."""
    if not key:
        return ""
    tail = key[-4:] if len(key) > 12 else ""
    head = re.match(r"^(?:[a-z]{2,5}_(?:test_|live_)?)?", key).group(0)
    return head + "****" + tail


# --------------------------------------------------------------------------
# Stripe's nested form encoding: a[b][c]=x, expand[0]=x, expand[]=x.

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_nested(pairs: List[Tuple[str, str]]) -> Dict[str, Any]:
    """Nested dicts and lists from decoded form pairs; values stay strings."""
    root: Dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY_RE.match(key)
        segments = [match.group(1)] + _SEGMENT_RE.findall(match.group(2)) if match else [key]
        node = root
        for depth, segment in enumerate(segments):
            if segment == "":
                # "[]" appends; a dict keyed "0", "1", ... becomes a list below.
                segment = str(len(node))
            if depth == len(segments) - 1:
                node[segment] = value
            else:
                child = node.get(segment)
                if not isinstance(child, dict):
                    child = node[segment] = {}
                node = child
    return _lists_from_indexes(root)


def _lists_from_indexes(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _lists_from_indexes(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def parse_form(raw: str) -> Dict[str, Any]:
    return parse_nested(parse_qsl(raw, keep_blank_values=True))


def _booleans(value: Any) -> Any:
    """Form values as Stripe stores them: "true"/"false" become booleans and
    an empty string unsets (null). Metadata stays strings."""
    if isinstance(value, dict):
        return {k: (v if k == "metadata" else _booleans(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_booleans(v) for v in value]
    if value == "true":
        return True
    if value == "false":
        return False
    if value == "":
        return None
    return value


def _deep_merge(target: Dict[str, Any], updates: Dict[str, Any]) -> None:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _merge_metadata(current: Dict[str, str], updates: Dict[str, Any]) -> Dict[str, str]:
    """Stripe's metadata update: keys merge in, an empty value deletes its key."""
    merged = dict(current)
    for key, value in updates.items():
        if value is None or value == "":
            merged.pop(str(key), None)
        else:
            merged[str(key)] = str(value)
    return merged


# --------------------------------------------------------------------------
# Requests and responses.

@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, Any]
    params: Dict[str, Any]
    headers: Dict[str, str]
    request_id: str = field(default_factory=lambda: _random_id("req_", 14))

    @property
    def stripe_account(self) -> Optional[str]:
        return self.headers.get("stripe-account") or None

    @property
    def idempotency_key(self) -> Optional[str]:
        return self.headers.get("idempotency-key") or None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, indent=2).encode("utf-8"),
                    {"Content-Type": "application/json"})


def stripe_error(status: int, message: str, type: str = "invalid_request_error",
                 code: Optional[str] = None, param: Optional[str] = None) -> Response:
    error: Dict[str, Any] = {"type": type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return json_response({"error": error}, status)


def oauth_error(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def html_response(title: str, body: str, status: int = 200) -> Response:
    page = _PAGE % {"title": html.escape(title), "body": body}
    return Response(status, page.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})


def redirect(location: str) -> Response:
    return Response(302, b"", {"Location": location})


class SandboxError(Exception):
    """Raised inside a handler to answer with a Stripe error body."""

    def __init__(self, status: int, message: str, code: Optional[str] = None,
                 param: Optional[str] = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.response = stripe_error(status, message, type=type, code=code, param=param)


def _missing(kind: str, object_id: str, param: str = "id") -> SandboxError:
    """Stripe's answer to an id the account does not have: 404 for the id in
    the path (param "id"), 400 for one given as a param, cursors included."""
    return SandboxError(404 if param == "id" else 400, "No such %s: '%s'" % (kind, object_id),
                        code="resource_missing", param=param)


MAX_EXPAND_LEVELS = 4


def _expansions(params: Dict[str, Any]) -> List[str]:
    """The expand paths of a request: expand[0]=a&expand[1]=b, expand[]=a or expand=a."""
    value = params.get("expand")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        paths = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        paths = value
    else:
        raise SandboxError(400, "Invalid array", param="expand")
    for path in paths:
        # Stripe counts the levels from the top of the answer, `data` of a
        # list included: data.items.data.price.product is five.
        if len(path.split(".")) > MAX_EXPAND_LEVELS:
            raise SandboxError(400, "You cannot expand more than %d levels of a property. Property: %s"
                               % (MAX_EXPAND_LEVELS, path), param="expand")
    return paths


def _form_bool(value: Any, param: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise SandboxError(400, "Invalid boolean: %s" % value, param=param)


def _form_int(value: Any, param: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    raise SandboxError(400, "Invalid integer: %s" % value, param=param)


def _form_metadata(value: Any, current: Dict[str, str]) -> Dict[str, str]:
    """The metadata param as changes for _merge_metadata: metadata="" unsets every key."""
    if value is None:
        return {}
    if value == "":
        return {key: "" for key in current}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return value
    raise SandboxError(400, "Invalid hash", param="metadata")


def _created_matches(created: int, condition: Any) -> bool:
    if condition is None:
        return True
    if not isinstance(condition, dict):
        return str(created) == str(condition)
    checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
              "lte": lambda a, b: a <= b}
    for name, bound in condition.items():
        if name in checks and str(bound).lstrip("-").isdigit() and not checks[name](created, int(bound)):
            return False
    return True


def _page(items: List[Dict[str, Any]], params: Dict[str, Any], url: str, kind: str,
          order: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """One page of a newest-first list, Stripe's cursor pagination. A cursor
    is looked up in `order` when given: every object of the kind, newest
    first, that the filtered items were taken from. At Stripe a cursor marks
    a place, so one the filters no longer match (an invoice paid between two
    pages of open ones) still pages on."""
    limit = int(params.get("limit") or DEFAULT_PAGE_LIMIT)
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise SandboxError(400, "This value must be between 1 and 100 (it currently is %d)." % limit,
                           param="limit")
    rank = {item["id"]: index for index, item in enumerate(items if order is None else order)}
    if params.get("starting_after"):
        if params["starting_after"] not in rank:
            raise _missing(kind, params["starting_after"], "starting_after")
        after = rank[params["starting_after"]]
        items = [item for item in items if rank[item["id"]] > after]
    elif params.get("ending_before"):
        if params["ending_before"] not in rank:
            raise _missing(kind, params["ending_before"], "ending_before")
        until = rank[params["ending_before"]]
        before = [item for item in items if rank[item["id"]] < until]
        return {"object": "list", "data": before[-limit:], "has_more": len(before) > limit, "url": url}
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s</title>
<style>
*, *::before, *::after { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, sans-serif; background: #f6f9fc; color: #30313d; margin: 0; }
main { max-width: 640px; margin: 32px auto; background: #fff; padding: 28px 32px; border-radius: 8px;
       box-shadow: 0 2px 8px rgba(50, 50, 93, .12); }
main:has(table.wide) { max-width: 1160px; }
.banner { background: #635bff; color: #fff; padding: 8px 16px; font-size: 13px; }
h1 { font-size: 22px; margin-top: 0; } h2 { font-size: 17px; margin-top: 28px; }
h3 { font-size: 15px; margin-bottom: 4px; }
a { color: #0055d4; }
fieldset { border: 1px solid #e3e8ee; border-radius: 6px; margin: 16px 0; padding: 12px 16px; min-width: 0; }
legend { font-weight: 600; padding: 0 4px; }
label { display: block; margin: 8px 0 4px; } label.choice { display: flex; gap: 10px; align-items: flex-start; }
label.choice input { margin-top: 4px; } .indented { margin-left: 24px; }
input:not([type=radio]):not([type=checkbox]), select, textarea { display: block; padding: 7px 8px; font: inherit;
       border: 1px solid #8792a2; border-radius: 4px; width: 100%%; max-width: 28em; background: #fff; color: inherit; }
label > input:not([type=radio]):not([type=checkbox]) { margin-top: 4px; }
input[aria-invalid=true] { border-color: #c0123c; border-width: 2px; }
button, .button { display: inline-block; padding: 7px 14px; border-radius: 4px; border: 1px solid #8792a2;
       background: #fff; cursor: pointer; font: inherit; font-size: 14px; line-height: 1.4; text-decoration: none;
       color: inherit; margin: 2px 0; }
button:hover, .button:hover { background: #f6f9fc; }
.primary, .primary:hover { background: #635bff; border-color: #635bff; color: #fff; }
.danger, .danger:hover { background: #c0123c; border-color: #c0123c; color: #fff; }
:focus-visible { outline: 3px solid #0055d4; outline-offset: 2px; }
.actions { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin-top: 20px; }
.row { display: flex; flex-wrap: wrap; gap: 0 16px; align-items: flex-end; } .row > .field { flex: 1 1 9em; }
.with-button { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.with-button input:not([type]) , .with-button input[type=email] { flex: 1 1 12em; width: auto; }
form.inline { margin: 0 0 10px; } form.inline label { margin-top: 0; font-size: 13px; }
.muted { color: #6a7383; font-size: 13px; } .tag { color: #0e6245; font-size: 12px; }
.eyebrow { color: #6a7383; font-weight: 600; margin: 0 0 4px; }
.notice { border-left: 4px solid #0e6245; background: #effaf5; padding: 10px 14px; }
.problem { border-left: 4px solid #c0123c; background: #fff4f6; padding: 10px 14px; }
.identity { border: 1px solid #e3e8ee; border-radius: 6px; padding: 4px 16px 12px; margin: 16px 0; }
details { margin: 12px 0; } summary { cursor: pointer; color: #0055d4; }
ul.cards { list-style: none; padding: 0; }
.card { border: 1px solid #e3e8ee; border-radius: 6px; padding: 4px 16px 12px; margin: 0 0 12px; }
.card p { margin: 4px 0 8px; }
table { border-collapse: collapse; width: 100%%; } td, th { text-align: left; padding: 8px 6px;
       border-bottom: 1px solid #e3e8ee; vertical-align: top; } th[scope=row] { font-weight: normal; }
td form { margin: 0 0 6px; }
code { font-size: 12px; color: #6a7383; }
pre { background: #f6f9fc; padding: 12px; overflow: auto; font-size: 12px; max-height: 60vh; }
.visually-hidden { position: absolute !important; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
       overflow: hidden; clip: rect(0 0 0 0); clip-path: inset(50%%); white-space: nowrap; }
@media (max-width: 700px) {
  main { margin: 0; padding: 20px 16px; border-radius: 0; box-shadow: none; }
  code { overflow-wrap: anywhere; }
  table.stack td:empty { display: none; }
  table.stack thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  table.stack, table.stack tbody, table.stack tr, table.stack td, table.stack th[scope=row] { display: block; }
  table.stack tr { border-bottom: 1px solid #e3e8ee; padding: 8px 0; }
  table.stack td, table.stack th[scope=row] { border: 0; padding: 3px 0; }
  table.stack [data-label]::before { content: attr(data-label); display: block; font-size: 12px; font-weight: 600;
       color: #6a7383; }
}
</style></head>
<body><header class="banner">Stripe sandbox &middot; test data only</header><main>%(body)s</main></body></html>
"""
