"""Each stage packaged once per run, as `make package` packages it
(infra/package.py), and rehearsed (infra/rehearse.py)."""
import pytest

from infra import deployed, rehearse
from infra.package import package
from infra.project import stages

REGION = "us-east-1"


@pytest.fixture(scope="session")
def packaged(tmp_path_factory):
    """stage → the directory packaged (sam.yaml, deployment.zip)."""
    directories = {}
    for stage in stages():
        directory = str(tmp_path_factory.mktemp("packaged-" + stage))
        package(stage, directory, REGION)
        directories[stage] = directory
    return directories


@pytest.fixture(scope="session")
def sam(packaged):
    """stage → its packaged template, as sam.yaml has it."""
    return {stage: rehearse.load_packaged(directory) for stage, directory in packaged.items()}


@pytest.fixture(scope="session")
def rehearsals(packaged, sam):
    return {stage: rehearse.rehearse(sam[stage], stage, packaged[stage], REGION) for stage in packaged}


@pytest.fixture(scope="module")
def moto_aws():
    """moto's server for one module's stacks (infra/deployed.py). Its state
    is the process's: it goes when the module's tests are done, before any
    other test's moto starts afresh."""
    with deployed.MotoAWS() as aws:
        yield aws
