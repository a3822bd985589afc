"""`make sweep`: run `expire_access` once against the local stack that
`make run` is serving (same environment, same embedded AWS), as the
schedule would in AWS. Its revocations are announced by the running stack."""
import json
import logging
import os
import sys
import urllib.error
import urllib.request

from local.run import local_environment


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
    env = local_environment(os.environ)
    os.environ.clear()
    os.environ.update(env)
    if env.get("LOCAL_EMBEDDED_AWS") and not _answers(env["AWS_ENDPOINT_URL"]):
        print("Nothing answers at %s: start the local stack with `make run` first "
              "(its AWS keeps data in memory only while it runs)." % env["AWS_ENDPOINT_URL"],
              file=sys.stderr)
        return 2

    from chalice.test import Client

    from app import app
    from chalicelib.errors import ConfigurationError
    from chalicelib.settings import get_settings

    try:
        get_settings()
    except ConfigurationError as exc:
        print("The sweep will not run: %s" % exc, file=sys.stderr)
        return 2
    with Client(app) as client:
        event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                detail={}, resources=[])
        report = client.lambda_.invoke("expire_access", event).payload
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
    sys.exit(main())
