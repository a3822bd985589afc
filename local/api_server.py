"""Serve the Chalice app locally the way API Gateway would, with the
contract's answers where Chalice's local gateway or http.server has its own.

`chalice local` answers an unknown route with API Gateway's 403 "Missing
Authentication Token" (echoing the Authorization header back when one was
sent) and logs every request line with its query string, which for the OAuth
callback holds the code and the state. Deployed, the first is a gateway
response of the API (see infra/); locally this server gives the 404 and logs
paths only.

http.server answers a request it cannot read (a request line over 64 KiB, a
malformed one, a header line too long, over 100 headers) in HTML that quotes
the request, or, for some of them, not at all; here each is the contract's
JSON error. HEAD is answered as API Gateway does, as the GET without its
body; and like API Gateway, the gateway answers OPTIONS itself only on a
route with CORS configured in Chalice: elsewhere (the webhook) it reaches the
app like any other method, and no CORS headers come back.
"""
import json
import logging
from typing import Any, Dict, Optional, Union

from chalice.config import Config
from chalice.local import (ChaliceRequestHandler, LambdaEventConverter, LocalChalice, LocalDevServer,
                           LocalGateway, LocalGatewayException, RouteMatcher, ThreadedHTTPServer)

logger = logging.getLogger("local.api")

# API Gateway's own limit: a longer body is refused before it is read.
MAX_BODY_BYTES = 10 * 1024 * 1024

# http.server's own refusals, in the contract's words. Its messages quote the
# request, so none of them is sent.
SERVER_ERRORS = {
    400: ("invalid_request", "The request line or its headers are malformed"),
    405: ("method_not_allowed", "This route does not answer that method"),
    413: ("payload_too_large", "The body is over %d bytes" % MAX_BODY_BYTES),
    414: ("uri_too_long", "The request line is over 65536 bytes"),
    431: ("request_header_fields_too_large",
          "A header line is over 65536 bytes, or there are over 100 headers"),
    505: ("http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are served"),
}


class RawQueryEvents(LambdaEventConverter):
    """Events that also carry the query string as the client sent it, as an
    HTTP API's do (`rawQueryString`): the OAuth callback bounces it on byte
    for byte. A byte a URL cannot hold as it is (a space, a control
    character, anything past ASCII, which a browser would have
    percent-encoded itself) goes on percent-encoded: a Location header holds
    ASCII only."""

    def create_lambda_event(self, method: str, path: str, headers: Dict[str, str],
                            body: Optional[bytes] = None) -> Dict[str, Any]:
        event = super().create_lambda_event(method, path, headers, body)
        # http.server reads the request line as Latin-1: one character a byte.
        sent = path.partition("?")[2].encode("latin-1", "replace")
        event["rawQueryString"] = "".join(chr(byte) if 0x20 < byte < 0x7f else "%%%02X" % byte for byte in sent)
        return event


class ContractGateway(LocalGateway):
    def __init__(self, app_object: Any, config: Config) -> None:
        super().__init__(app_object, config)
        self.event_converter = RawQueryEvents(RouteMatcher(list(app_object.routes)),
                                              app_object.api.binary_types)

    def handle_request(self, method: str, path: str, headers: Dict[str, Any],
                       body: Optional[bytes]) -> Dict[str, Any]:
        return super().handle_request("GET" if method == "HEAD" else method, path, headers, body)

    def _has_user_defined_options_method(self, lambda_event: Dict[str, Any]) -> bool:
        # Chalice's gateway answers OPTIONS on every route without an OPTIONS
        # view with CORS headers of its own; API Gateway only where a view has
        # CORS configured.
        route = self._app_object.routes[lambda_event["requestContext"]["resourcePath"]]
        return "OPTIONS" in route or all(view.cors is None for view in route.values())


class ContractRequestHandler(ChaliceRequestHandler):
    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any,
                 config: Config) -> None:
        # Set before BaseHTTPRequestHandler's __init__, which serves the connection.
        self.local_gateway = ContractGateway(app_object, config)
        super(ChaliceRequestHandler, self).__init__(request, client_address, server)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            # A request line without a version: no client of this API sends one.
            self.send_error(400)
            return False
        return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        # http.server answers an unknown method 501; for API Gateway it is a
        # method the route does not answer.
        status = 405 if code == 501 else code
        error, text = SERVER_ERRORS.get(status, ("invalid_request", "The request could not be read"))
        if self.request_version == "HTTP/0.9":
            # http.server writes no status line and no headers to HTTP/0.9.
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        body = json.dumps({"error": {"code": error, "message": text}})
        self._send_http_response(status, {"Content-Type": "application/json", "Connection": "close",
                                          "Cache-Control": "no-store"}, body)

    def _generic_handle(self) -> None:
        # Chalice's handler reads as many bytes as Content-Length says and
        # fails on anything but a number: a length that is not one number, or
        # is over API Gateway's limit, is refused before the body is read.
        lengths = set(value.strip() for value in self.headers.get_all("Content-Length") or ["0"])
        length = lengths.pop() if len(lengths) == 1 else ""
        if not (length.isascii() and length.isdigit()):
            self.send_error(400)
        elif int(length) > MAX_BODY_BYTES:
            self.send_error(413)
        else:
            super()._generic_handle()

    def _send_error_response(self, error: LocalGatewayException) -> None:
        body = json.dumps({"error": {"code": "not_found", "message": "No such route"}})
        self._send_http_response(404, {"Content-Type": "application/json"}, body)

    def _send_http_response(self, code: int, headers: Dict[str, Any],
                            body: Optional[Union[str, bytes]]) -> None:
        if self.command != "HEAD":
            super()._send_http_response(code, headers, body)
            return
        # The GET's status and headers, its length included, and no body: the
        # client would read one as the start of the next answer.
        payload = body.encode("utf-8") if isinstance(body, str) else body or b""
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        if body is not None:
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self._send_headers(headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _generic_handle

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD> and answers a method it lacks
        # before reading the body, which then reads as the next request on a
        # kept-alive connection. Any other method (TRACE, CONNECT, QUERY) goes
        # to the route like these: the app answers 405 with the route's Allow.
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return self._generic_handle
        raise AttributeError(name)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # A request that could not be read has no path (or the previous one's).
        path = self.path.split("?", 1)[0] if self.command else "-"
        logger.info("%s %s %s", self.command or "-", path, code)

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("request failed: %s", format % args)


class ContractHTTPServer(ThreadedHTTPServer):
    # http.server's backlog of 5 overflows under a burst of connections (30
    # webhook deliveries at once): the kernel drops or resets the rest.
    request_queue_size = 128


def requests_per_thread(app: Any) -> Any:
    """Chalice keeps the request being served on the app object itself; with
    a thread per request, a view could read another caller's request (its
    token, its body). `chalice local` makes the app a LocalChalice, whose
    current request is per thread; so does this."""
    if not isinstance(app, LocalChalice):
        app.__class__ = type("Local" + type(app).__name__, (LocalChalice, type(app)), {})
    return app


def make_server(app: Any, host: str, port: int) -> LocalDevServer:
    config = Config.create(chalice_stage="dev", app_name="stripe-connector",
                           lambda_timeout=30, lambda_memory_size=512)
    return LocalDevServer(requests_per_thread(app), config, host, port,
                          handler_cls=ContractRequestHandler, server_cls=ContractHTTPServer)
