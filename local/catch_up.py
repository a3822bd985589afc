"""`make catch-up`: catch_up once against the running local stack; the
stack's work queue consumer then catches each connected account up."""
import sys

from local.scheduled import main

if __name__ == "__main__":
    sys.exit(main("catch_up"))
