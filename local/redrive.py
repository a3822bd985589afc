"""`make redrive QUEUE=…`: python -m infra.redrive against the local stack
that `make run` is serving; the running stack's consumers then take the
messages moved back."""
import sys

from local.scheduled import use_running_stack

if __name__ == "__main__":
    not_running = use_running_stack()
    if not_running is not None:
        sys.exit(not_running)
    from infra import redrive

    sys.exit(redrive.main())
