"""The local stack's reference CustomerHub UI: web/ on http://localhost:3000
(UI_PORT), so that every redirect of the connection and the portal lands on
a real page.

The UI calls the API cross-origin with a bearer token, as CustomerHub's UI
does. Beside web/ this server answers two things only the local stack has:
`GET /config.json` (where the API is) and `POST /local/sign-in`, which mints
a development token with the stack's own secret. CustomerHub signs its users
in itself; the API never mints a token. It answers only requests addressed
to localhost or 127.0.0.1 (local/hosts.py).
"""
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import urlsplit

from local.hosts import REFUSAL, addressed_here, listens_on_ipv6_loopback

logger = logging.getLogger("local.ui")

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
# The UI's pages: each is index.html, whose script shows the page its path names.
PAGES = ("/", "/settings", "/settings/connectors", "/settings/connectors/stripe/callback", "/settings/members",
         "/account")
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".ico": "image/x-icon"}
ROLES = ("admin", "owner", "member")
MAX_SIGN_IN_BYTES = 4096
MAX_ID_LENGTH = 256

# Mints a token for (user id, role, email).
Minter = Callable[[str, str, str], str]


class SignInRefused(Exception):
    """A sign-in request the local sign-in does not accept."""


def sign_in_claims(body: Any) -> Tuple[str, str, str]:
    """The user id, role and email of a local sign-in, checked."""
    if not isinstance(body, dict):
        raise SignInRefused("The body must be a JSON object")
    role, user_id, email = body.get("role"), body.get("user_id"), body.get("email")
    if role not in ROLES:
        raise SignInRefused("role must be one of %s" % ", ".join(ROLES))
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > MAX_ID_LENGTH:
        raise SignInRefused("Give a user id of 1 to %d characters" % MAX_ID_LENGTH)
    if not isinstance(email, str) or len(email) > 254 or email.count("@") != 1 or email.strip() != email \
            or not all(email.split("@")):
        raise SignInRefused("Give an email address, such as member@localfitness.test")
    return user_id.strip(), role, email


class UIRequestHandler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        bound = self.server.server_address[0]
        if addressed_here(self.headers.get_all("Host") or [], ipv6=listens_on_ipv6_loopback(bound)):
            return True
        # Another name pointed at loopback (DNS rebinding): the sign-in mints
        # nothing for it, and no page or file is given to it. The body is not read.
        self.close_connection = True
        self._send_json(421, {"error": {"code": "misdirected_request", "message": REFUSAL}}, close=True)
        return False

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/config.json":
            self._send(200, json.dumps(self.server.ui.config).encode(), "application/json", cache="no-store")
            return
        if path in PAGES:
            moved = self.server.ui.canonical_location(self.headers.get("Host"), self.path)
            if moved:
                self._send(302, b"", None, extra={"Location": moved})
                return
            self._send_page(200)
            return
        found = self._static_file(path)
        if found is None:
            # The page's script says so, with the menu to go on from.
            self._send_page(404)
            return
        body, content_type = found
        self._send(200, body, content_type, cache="no-cache")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/local/sign-in":
            self._send_json(405, {"error": {"code": "method_not_allowed", "message": "Only GET here"}})
            return
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_SIGN_IN_BYTES:
            self._send_json(413, {"error": {"code": "payload_too_large", "message": "The body is too long"}})
            return
        raw = self.rfile.read(int(length))
        # JSON only: another site's page cannot send that without a
        # preflight, which this server never answers.
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self._send_json(415, {"error": {"code": "unsupported_media_type", "message": "Send JSON"}})
            return
        try:
            user_id, role, email = sign_in_claims(json.loads(raw or b"null"))
        except (ValueError, SignInRefused) as exc:
            message = str(exc) if isinstance(exc, SignInRefused) else "The body is not valid JSON"
            self._send_json(400, {"error": {"code": "invalid_request", "message": message}})
            return
        token = self.server.ui.mint(user_id, role, email)
        self._send_json(200, {"token": token})

    def _static_file(self, path: str) -> Optional[Tuple[bytes, str]]:
        root = self.server.ui.web_root
        try:
            target = (root / path.lstrip("/")).resolve()
        except (OSError, ValueError):
            return None
        if root not in target.parents or not target.is_file() or target.suffix not in TYPES:
            return None
        return target.read_bytes(), TYPES[target.suffix]

    def _send_page(self, status: int) -> None:
        body = (self.server.ui.web_root / "index.html").read_bytes()
        self._send(status, body, TYPES[".html"], cache="no-store", extra=self.server.ui.page_headers)

    def _send_json(self, status: int, body: Dict[str, Any], close: bool = False) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", cache="no-store",
                   extra={"Connection": "close"} if close else None)

    def _send(self, status: int, body: bytes, content_type: Optional[str], cache: str = "no-store",
              extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        # The callback page's address holds Stripe's code and the state.
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # Paths only: the callback page's query is a live code and state.
        logger.debug("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("request failed: %s", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    ui: "UIServer"


class UIServer:
    """web/ on http://host:port (port 0: any free one)."""

    def __init__(self, api_url: str, app_base_url: str, mint: Minter, host: str = "127.0.0.1", port: int = 3000,
                 web_root: Path = WEB_ROOT, extra_config: Optional[Dict[str, Any]] = None):
        self.web_root = web_root.resolve()
        self.mint = mint
        self.app_base_url = app_base_url
        self.config = dict(extra_config or {}, apiBaseUrl=api_url, appBaseUrl=app_base_url)
        api_origin = "{0.scheme}://{0.netloc}".format(urlsplit(api_url))
        self.page_headers = {"Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self' %s; base-uri 'none'; form-action 'self'; frame-ancestors 'none'" % api_origin)}
        self._server = _Server((host, port), UIRequestHandler)
        self._server.ui = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="ui-server", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return "http://%s:%d" % (host, port)

    def canonical_location(self, host: Optional[str], path: str) -> Optional[str]:
        """Where to send a page asked for under another name of this server
        (127.0.0.1 for localhost): the API answers CORS for APP_BASE_URL's
        origin alone, so the UI works only there."""
        app = urlsplit(self.app_base_url)
        if app.hostname not in ("localhost", "127.0.0.1") or app.port != self.port:
            return None
        if host is None or host.lower() == app.netloc.lower():
            return None
        return self.app_base_url + path

    def start(self) -> "UIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
