import pytest

from local.embedded_aws import EmbeddedAWS


@pytest.fixture(scope="module")
def embedded_aws():
    """The embedded AWS `make run` starts, on a free port."""
    aws = EmbeddedAWS(port=0).start()
    yield aws
    aws.stop()
