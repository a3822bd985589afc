"""Each stage packaged once per run, as `make package` packages it
(infra/package.py), and rehearsed (infra/rehearse.py)."""
import pytest

from infra import deployed, rehearse
from infra.package import package
from infra.project import stages

REGION = "us-east-1"
# Lines the mistakes' test leaves for the end of the run, where they are read.
SUMMARY = pytest.StashKey[list]()


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


@pytest.fixture
def summary(request):
    """Lines printed after the run's results (pytest would hide a test's
    prints). Run in a worker process (make test's -n 2), they reach the
    process that prints through the worker's output to it."""
    lines = request.config.stash.setdefault(SUMMARY, [])
    yield lines
    if hasattr(request.config, "workeroutput"):
        request.config.workeroutput.setdefault("rehearsal_summary", []).extend(lines)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """A worker done: the lines it kept, for the summary."""
    lines = getattr(node, "workeroutput", {}).get("rehearsal_summary")
    if lines:
        node.config.stash.setdefault(SUMMARY, []).extend(lines)


def pytest_terminal_summary(terminalreporter):
    lines = terminalreporter.config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.write_sep("-", "the rehearsal against mistakes in the template")
        for line in lines:
            terminalreporter.write_line(line)
