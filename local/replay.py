"""`make replay EVENT=evt_… ACCOUNT=acct_…`: python -m infra.replay against
the local stack that `make run` is serving (same environment, same embedded
AWS, same Stripe sandbox). What the replay changes is announced by the
running stack."""
import sys

from local.scheduled import use_running_stack

if __name__ == "__main__":
    not_running = use_running_stack()
    if not_running is not None:
        sys.exit(not_running)
    from chalicelib import observability
    from infra import replay

    observability.configure_logging(observability.PLAIN)
    sys.exit(replay.main())
