"""What every page shares: escaping, the error page with its way back,
notices, labels that name their row, dates and amounts, and the answers of
the dashboard's controls (a redirect for a browser, JSON for curl)."""
import html
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from local.stripe_sandbox.wire import Request, Response, html_response, json_response, stripe_error

DASHBOARD = ("/", "Go to the sandbox dashboard")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def hidden_text(text: str) -> str:
    """Words a screen reader says and the eye does not need, e.g. which row
    a button acts on when the row already shows it."""
    return '<span class="visually-hidden">%s</span>' % esc(text)


def notice(message: str) -> str:
    """Feedback after an action; a live region, so it is announced."""
    return '<p class="notice" role="status">%s</p>' % message


def problem(message: str) -> str:
    return '<p class="problem" role="alert">%s</p>' % message


def error_page(message: str, status: int = 400, back: Tuple[str, str] = DASHBOARD) -> Response:
    """The page for what cannot go on, with a way back: where the person
    came from when it is known, else the sandbox's dashboard."""
    href, label = back
    return html_response("Stripe sandbox \u2014 error", (
        '<h1>Something is wrong</h1>%s<p class="actions"><a class="button primary" href="%s">%s</a></p>'
        % (problem(esc(message)), esc(href), esc(label))), status)


def display_name(account: Dict[str, Any]) -> str:
    return ((account.get("settings") or {}).get("dashboard", {}).get("display_name")
            or (account.get("business_profile") or {}).get("name") or account.get("email") or account["id"])


def product_names(products: Dict[str, Dict[str, Any]], subscription: Dict[str, Any]) -> str:
    """What a subscription is to: its products' names (their ids when unknown)."""
    return ", ".join(products[i["price"]["product"]]["name"] if i["price"]["product"] in products
                     else i["price"]["product"] for i in subscription["items"]["data"])


def utc(timestamp: Optional[int]) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def day(timestamp: Optional[int]) -> str:
    """A date as a member reads it: 16 Apr 2030."""
    if timestamp is None:
        return ""
    return time.strftime("%d %b %Y", time.gmtime(timestamp)).lstrip("0")


def money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "\u20ac", "gbp": "\u00a3"}.get(currency.lower())
    value = "%d.%02d" % divmod(abs(int(amount)), 100)
    sign = "-" if amount < 0 else ""
    return sign + symbol + value if symbol else "%s%s %s" % (sign, value, currency.upper())


def with_query(url: str, pairs: List[Tuple[str, str]]) -> str:
    """url with pairs appended to whatever query it already carries."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + pairs
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def see_other(location: str) -> Response:
    """After a form's POST: the browser GETs location, and a reload does not post again."""
    return Response(303, b"", {"Location": location})


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def wants_page(request: Request) -> bool:
    """A browser's form post, which goes back to a page; curl takes JSON."""
    return "text/html" in request.headers.get("accept", "") and not wants_json(request)


def control_done(request: Request, obj: Dict[str, Any], location: str = "/") -> Response:
    """A dashboard control's answer: the object for curl, else back to the dashboard."""
    if wants_json(request):
        return json_response(obj)
    return see_other(location)


def control_error(request: Request, message: str, status: int = 400) -> Response:
    if wants_json(request):
        return stripe_error(status, message)
    return error_page(message, status)
