"""make bench: measure the webhook pipeline, the sweep, the import, the
catch-up, the claim on member routes, a month start on a simulated clock
and the functions' cold start, print
the tables and the targets; exit 1 when a target is missed, 2 when a
measurement failed."""
import os
import platform
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import world  # noqa: E402  (first: installs the AWS call counter)
from bench import claims, cold_start, imports, month_start, sweep, webhooks  # noqa: E402
from bench.report import Targets, seconds  # noqa: E402


def main() -> int:
    started = time.perf_counter()
    os.chdir(ROOT)
    targets = Targets()
    failed = False
    import moto
    print("Connector benchmarks: Python %s, moto %s, in-process; Stripe stand-in on loopback\n"
          % (platform.python_version(), moto.__version__))
    sandbox = world.start_sandbox()
    try:
        world.configure(sandbox)
        for name, part in (("webhook pipeline", webhooks.run), ("sweep", sweep.run),
                           ("import and catch-up", imports.run), ("claim on member routes", claims.run),
                           ("month start", month_start.run), ("cold start", cold_start.run)):
            print("measuring the %s ..." % name, file=sys.stderr, flush=True)
            try:
                print(part(sandbox, targets), flush=True)
            except Exception as exc:
                failed = True
                traceback.print_exc()
                targets.failed(name, "%s: %s" % (type(exc).__name__, exc))
    finally:
        sandbox.stop()
    print(targets.render())
    missed = targets.missed
    took = time.perf_counter() - started
    if failed:
        print("A measurement failed (see above); %d of %d targets not met. Total time %s."
              % (len(missed), len(targets.items), seconds(took)))
        return 2
    if missed:
        print("%d of %d targets missed. Total time %s." % (len(missed), len(targets.items), seconds(took)))
        return 1
    print("All %d targets met. Total time %s." % (len(targets.items), seconds(took)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
