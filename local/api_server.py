"""Serve the Chalice app locally the way API Gateway would, with the
contract's answers where Chalice's local gateway has its own.

`chalice local` answers an unknown route with API Gateway's 403 "Missing
Authentication Token" (echoing the Authorization header back when one was
sent) and logs every request line with its query string, which for the OAuth
callback holds the code and the state. Deployed, the first is a gateway
response of the API (see infra/); locally this server gives the 404 and logs
paths only.
"""
import json
import logging
from typing import Any

from chalice.config import Config
from chalice.local import (ChaliceRequestHandler, LocalChalice, LocalDevServer,
                           LocalGatewayException, ThreadedHTTPServer)

logger = logging.getLogger("local.api")


class ContractRequestHandler(ChaliceRequestHandler):
    def _send_error_response(self, error: LocalGatewayException) -> None:
        body = json.dumps({"error": {"code": "not_found", "message": "No such route"}})
        self._send_http_response(404, {"Content-Type": "application/json"}, body)

    def _unsupported_method(self) -> None:
        body = json.dumps({"error": {"code": "method_not_allowed",
                                     "message": "This route does not answer that method"}})
        self._send_http_response(405, {"Content-Type": "application/json"}, body)

    do_TRACE = do_CONNECT = _unsupported_method

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        path = self.path.split("?", 1)[0]
        logger.info("%s %s %s", self.command, path, code)

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
