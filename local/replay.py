"""`make replay EVENT=evt_… ACCOUNT=acct_…`: python -m infra.replay against
the local stack that `make run` is serving (same environment, same embedded
AWS, same Stripe sandbox). What the replay changes is announced by the
running stack."""
import os
import sys
import urllib.error
import urllib.request
from typing import Optional

from local.run import local_environment


def use_running_stack() -> Optional[int]:
    """Take on the local stack's environment; an exit status when nothing
    serves it, else None."""
    env = local_environment(os.environ)
    os.environ.clear()
    os.environ.update(env)
    if env.get("LOCAL_EMBEDDED_AWS") and not _answers(env["AWS_ENDPOINT_URL"]):
        print("Nothing answers at %s: start the local stack with `make run` first "
              "(its AWS keeps data in memory only while it runs)." % env["AWS_ENDPOINT_URL"],
              file=sys.stderr)
        return 2
    return None


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


if __name__ == "__main__":
    not_running = use_running_stack()
    if not_running is not None:
        sys.exit(not_running)
    from chalicelib import observability
    from infra import replay

    observability.configure_logging(observability.PLAIN)
    sys.exit(replay.main())
