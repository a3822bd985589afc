"""Which requests the local stack's own servers answer: those addressed to
this machine by name (`localhost`, `127.0.0.1`, on any port).

A page on another site can make a browser send requests to loopback under a
name of its own that it points at 127.0.0.1 (DNS rebinding); the browser
then treats the answers as that site's and lets its page read them. Such a
request still carries that name in `Host`, so a server that answers only
its own names gives it nothing to read and does nothing for it. The local
sign-in, which mints an owner's token, and the Stripe sandbox, whose
dashboard moves money and time, check it."""
import re
from typing import List, Optional
from urllib.parse import urlsplit

_LOCAL = re.compile(r"(?:localhost|127\.0\.0\.1)(?::[0-9]{1,5})?", re.IGNORECASE)
_LOCAL_OR_IPV6 = re.compile(r"(?:localhost|127\.0\.0\.1|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)

REFUSAL = ("This server answers only requests addressed to localhost or 127.0.0.1, not to the name this one "
           "was sent to.")


def addressed_here(hosts: List[str], ipv6: bool = False) -> bool:
    """Whether a request's Host headers (all of them) name this machine:
    exactly one, `localhost` or `127.0.0.1` with any port (`[::1]` too for a
    server that listens there)."""
    if len(hosts) != 1:
        return False
    return bool((_LOCAL_OR_IPV6 if ipv6 else _LOCAL).fullmatch(hosts[0].strip()))


def listens_on_ipv6_loopback(bound_host: Optional[str]) -> bool:
    return bound_host in ("::1", "::")


CROSS_SITE_REFUSAL = ("This form was sent from another page than this server's own: nothing was done. Use the "
                      "form on this server's page.")


def sent_from_here(origin: Optional[str], host: Optional[str]) -> bool:
    """Whether a form post came from this server's own pages, by the Origin
    a browser sets on every POST. A page on another site can post a form to
    loopback under loopback's own name, which the Host check lets through;
    its Origin is its own (or `null`). No Origin: not a browser's form (a
    script, curl, a test), which no other site can make a browser send."""
    if origin is None:
        return True
    parts = urlsplit(origin.strip())
    return parts.scheme == "http" and bool(host) and parts.netloc.lower() == host.strip().lower() \
        and not parts.path
