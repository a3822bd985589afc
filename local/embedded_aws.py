"""The local stack's own AWS (DynamoDB, SQS, SSM, EventBridge): moto's
server, safe under concurrent requests.

moto keeps its state in plain dicts and does not guard them: a DynamoDB
transaction deep-copies the tables while a request in another thread writes
them ("dictionary changed size during iteration"), and the API answers 500.
The API serves each request in a thread of its own, so this server lets one
request at a time into moto.

moto also remembers every model object it ever made, for its dashboard; the
copies of the tables a transaction takes (to roll back) are among them, so
without a clean-up each TransactWriteItems would keep the size of the tables
it writes for good, gigabytes after a few thousand webhooks. After each
request that record is dropped: nothing in the local stack reads it.

Transactions themselves are mended too (local/moto_transactions.py): a
failed one no longer leaves its records on the stream the pump is reading,
and rolling back no longer costs more with every write before it. So are
queues (local/moto_queues.py): sending, receiving and deleting no longer
pass over every message a queue holds.
"""
import threading
from typing import Any, Callable, Iterable, List

from moto.core.model_instances import reset_model_data
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local import moto_queues, moto_transactions


class OneAtATime:
    """WSGI middleware: the wrapped application serves one request at a time."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> List[bytes]:
        with self._lock:
            # A WSGI body may be produced lazily, after this call returns: it
            # is read to the end here, while moto is still ours alone.
            result = self._app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                reset_model_data()


class EmbeddedAWS:
    """DynamoDB, SSM and EventBridge on http://host:port (port 0: any free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5000):
        moto_transactions.install()
        moto_queues.install()
        app = OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="embedded-aws", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return "http://%s:%d" % (host, port)

    def start(self) -> "EmbeddedAWS":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
