"""python -m local.stripe_sandbox: serve the sandbox until interrupted."""
import sys

from local.stripe_sandbox.sandbox import main

if __name__ == "__main__":
    sys.exit(main())
