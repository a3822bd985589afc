"""`make sweep` and `make catch-up`: run a scheduled function
(`expire_access`, `catch_up`) once against the local stack that `make run`
is serving (same environment, same embedded AWS, same clock), as its
schedule would in AWS. What it changes is announced, and what it queues is
worked, by the running stack."""
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import Optional

from chalicelib import clock
from local import clock as local_clock
from local.run import local_environment
from local.schedules import scheduled_event


def use_running_stack() -> Optional[int]:
    """Take on the environment of the local stack `make run` is serving; an
    exit status when nothing serves it, else None. Shared by `make sweep`,
    `make catch-up`, `make replay` and `make redrive`."""
    env = local_environment(os.environ)
    os.environ.clear()
    os.environ.update(env)
    if env.get("LOCAL_EMBEDDED_AWS") and not _answers(env["AWS_ENDPOINT_URL"]):
        print("Nothing answers at %s: start the local stack with `make run` first "
              "(its AWS keeps data in memory only while it runs)." % env["AWS_ENDPOINT_URL"],
              file=sys.stderr)
        return 2
    if env.get("LOCAL_STRIPE_SANDBOX"):
        # The stack's time is the sandbox's, which may have been moved ahead.
        try:
            clock.use(local_clock.of_running_sandbox(env["STRIPE_API_BASE"]))
        except (OSError, ValueError, KeyError) as exc:
            print("The Stripe sandbox at %s did not tell its time (%s): start the local stack with `make run` "
                  "first." % (env["STRIPE_API_BASE"], exc), file=sys.stderr)
            return 2
    return None


def main(function_name: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
    not_running = use_running_stack()
    if not_running is not None:
        return not_running

    import app
    from chalicelib.errors import ConfigurationError
    from chalicelib.settings import get_settings

    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print("%s will not run: %s" % (function_name, exc), file=sys.stderr)
        return 2
    report = getattr(app, function_name)(scheduled_event(settings.aws_region), None)
    print(json.dumps(report, indent=2))
    return 0


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
