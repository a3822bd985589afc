"""`make advance DAYS=… HOURS=…`: moves the clock of the local stack that
`make run` is serving ahead, as Stripe's test clocks do. The clock is the
Stripe sandbox's, which the API and the scheduled functions read: what
falls due in between (renewals, trial ends, cancellations, failed renewals)
happens in order, and its events go to the API as webhooks."""
import argparse
import os
import sys
import time
import urllib.error
from collections import Counter
from typing import List, Optional

from local import clock
from local.run import local_environment


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.advance",
                                     description="Move the local stack's clock ahead.")
    parser.add_argument("--days", type=float, default=0)
    parser.add_argument("--hours", type=float, default=0)
    parser.add_argument("--seconds", type=float, default=0)
    args = parser.parse_args(argv)
    env = local_environment(os.environ)
    if not env.get("LOCAL_STRIPE_SANDBOX"):
        print("make run talks to Stripe itself here (STRIPE_SECRET_KEY is set): its time is Stripe's, which "
              "moves only with Stripe's own test clocks.", file=sys.stderr)
        return 2
    sandbox_url = env["STRIPE_API_BASE"]
    try:
        moved = clock.advance(sandbox_url, days=args.days, hours=args.hours, seconds=args.seconds)
    except urllib.error.HTTPError as exc:
        print("The clock did not move: %s" % clock.refusal(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print("Nothing answers at %s (%s): start the local stack with `make run` first." % (sandbox_url, exc),
              file=sys.stderr)
        return 2
    print("The local clock is now %s, %s ahead of this machine's." % (
        moved["now_iso"], _days(moved["offset_seconds"])))
    happened = Counter(item["what"] for item in moved["happened"])
    if happened:
        print("Fell due meanwhile, each with its webhooks: %s." % ", ".join(
            "%s %d" % (what.replace("_", " "), count) for what, count in sorted(happened.items())))
        for item in moved["happened"]:
            print("  %s  %-26s %s  %s" % (_iso(item["at"]), item["what"], item["subscription"], item["account"]))
    else:
        print("Nothing fell due meanwhile.")
    return 0


def _days(seconds: int) -> str:
    days, rest = divmod(int(seconds), 24 * 3600)
    return "%d day%s %02d:%02d:%02d" % (days, "" if days == 1 else "s", rest // 3600, rest % 3600 // 60, rest % 60)


def _iso(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


if __name__ == "__main__":
    sys.exit(main())
