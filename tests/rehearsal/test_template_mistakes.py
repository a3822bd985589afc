"""Eight mistakes in the functions of dev's packaged template, each made
alone in a copy of sam.yaml: what cfn-lint on sam.yaml (`make lint`) sees of
them, what SAM's transform and cfn-lint on its output see, and what the
whole rehearsal sees. The table is printed at the end of the run."""
import copy
import json

from cfnlint import ManualArgs
from cfnlint.api import lint as cfn_lint

from infra import rehearse

REGION = "us-east-1"


def _properties(template, function):
    return template["Resources"][function]["Properties"]


def _event(template, function):
    (event,) = _properties(template, function)["Events"].values()
    return event["Properties"]


def runtime(template):
    _properties(template, "APIHandler")["Runtime"] = "python3.99"


def timeout(template):
    _properties(template, "SyncWorker")["Timeout"] = 1000


def dangling_sub(template):
    _properties(template, "SyncWorker")["Environment"]["Variables"]["SYNC_QUEUE_ARN"] = {
        "Fn::Sub": "${SyncQueueTypo.Arn}"}


def batch_size(template):
    _event(template, "StripeEvents")["BatchSize"] = 20000


def schedule(template):
    _event(template, "ExpireAccess")["Schedule"] = "rate(0 minutes)"


def memory(template):
    _properties(template, "CatchUp")["MemorySize"] = 10


def handler(template):
    _properties(template, "WatchWebhookEndpoint")["Handler"] = "app.watch_webhook_endpiont"


def queue(template):
    _event(template, "SyncWorker")["Queue"] = {"Fn::Sub": "${NoSuchQueue.Arn}"}


# (what the mistake is, the function it is made in, how)
MISTAKES = [
    ("a runtime Lambda does not have (python3.99)", "APIHandler", runtime),
    ("a timeout of 1,000 s (Lambda's most is 900)", "SyncWorker", timeout),
    ("${SyncQueueTypo.Arn} in an environment variable", "SyncWorker", dangling_sub),
    ("an SQS batch size of 20,000", "StripeEvents", batch_size),
    ("the schedule rate(0 minutes)", "ExpireAccess", schedule),
    ("a memory size of 10 MB", "CatchUp", memory),
    ("a handler app.py does not define", "WatchWebhookEndpoint", handler),
    ("an SQS event source on a queue that is not there", "SyncWorker", queue),
]
TRANSFORM_AND_LINT = (rehearse.TRANSLATE, rehearse.LINT)


def _about(where, function):
    """Whether a finding's place is the function or what SAM makes of it
    (its event source mapping, schedule rule, permission: ids that start with it)."""
    return where.startswith("Resources/" + function)


def _lint_sam(template):
    """`make lint`: cfn-lint on the SAM template itself."""
    return list(cfn_lint(json.dumps(template), config=ManualArgs(regions=[REGION])))


def test_the_rehearsal_catches_at_least_seven_of_the_eight_mistakes(sam, packaged, rehearsals, summary):
    assert rehearsals["dev"].ready and not _lint_sam(sam["dev"]), "dev must be clean before it is broken"
    rows, caught_by_lint, caught_by_transform, caught, missed = [], 0, 0, 0, []
    for description, function, make in MISTAKES:
        template = copy.deepcopy(sam["dev"])
        make(template)
        linted = _lint_sam(template)
        rehearsal = rehearse.rehearse(template, "dev", packaged["dev"], REGION)
        found = [f for f in rehearsal.blocking if _about(f.where, function)]
        by_transform = [f for f in found if f.check in TRANSFORM_AND_LINT]
        caught_by_lint += bool(linted)
        caught_by_transform += bool(by_transform)
        caught += bool(found)
        if not found:
            missed.append(description)
        rows.append("  %-50s %-10s %-18s %s" % (
            description, "caught" if linted else "missed", "caught" if by_transform else "missed",
            "; ".join(sorted({f.check for f in found})) or "MISSED"))
        # Nothing the mistake did not cause: a finding elsewhere would be noise an operator must read past.
        assert [f for f in rehearsal.blocking if f not in found] == [], (description, rehearsal.report())
    summary.extend(["  %-50s %-10s %-18s %s" % ("mistake (one at a time, in dev)", "make lint", "transform+cfn-lint",
                                                 "rehearsal (by)")] + rows + [
        "  of %d: make lint caught %d, the transform and cfn-lint %d, the rehearsal %d; missed: %s" % (
            len(MISTAKES), caught_by_lint, caught_by_transform, caught, ", ".join(missed) or "none")])
    assert caught >= 7, "\n".join(summary)
