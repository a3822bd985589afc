"""`make sweep`: expire_access once against the running local stack."""
import sys

from local.scheduled import main

if __name__ == "__main__":
    sys.exit(main("expire_access"))
