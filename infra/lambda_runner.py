"""One function of the deployment zip, run as Lambda's Python runtime runs it:
an interpreter that has the task root (the unzipped zip) and the standard
library, nothing else (infra/lambda_service.py starts it `python -I -S -B`).

    python3.11 -I -S -B infra/lambda_runner.py

Lambda's own environment names what to run: LAMBDA_TASK_ROOT (the unzipped
zip), _HANDLER (`module.name`, the function's Handler), the function's
variables and AWS_LAMBDA_FUNCTION_*; RUNNER_TIMEOUT_SECONDS is the
function's Timeout (Lambda keeps it to itself; the context tells the time
left). The handler is imported once, as a cold start does (its import is the
init phase), then each line on stdin is one invocation:

    {"event": {...}, "request_id": "…", "invoked_function_arn": "arn:…"}

and each answer is one line of JSON on stdout: {"result": …}, or
{"error": {"errorMessage", "errorType", "stackTrace"}} as Lambda reports a
function's error. Before the first, one line tells how the init went:
{"init": {"error": null | {…}, "sys_path": […], "modules": {…}}}.

What the function prints or logs goes to stderr, between Lambda's own
`START RequestId: …` and `END RequestId: …` lines, as its log stream has
it: stdout carries only the answers.

Standard library only: it runs beside the zip's code, not with the repository's.
"""
import importlib
import json
import os
import sys
import time
import traceback
import uuid

# Where modules that the zip must carry would otherwise come from.
WATCHED_MODULES = ("boto3", "botocore", "stripe", "pynamodb", "jwt", "aws_lambda_powertools", "chalice")


class LambdaContext:
    """The context object Lambda hands a Python function."""

    def __init__(self, request_id, invoked_function_arn, timeout_seconds):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def error_of(exc, error_type=None):
    return {"errorMessage": str(exc), "errorType": error_type or type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__)}


def load_handler(name):
    """The handler and None, or None and the error Lambda reports for it."""
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # Lambda's wording: Runtime.ImportModuleError
        return None, dict(error_of(exc, "Runtime.ImportModuleError"),
                          errorMessage="Unable to import module '%s': %s" % (module_name, exc))
    handler = getattr(module, attribute, None)
    if handler is None:
        return None, {"errorMessage": "Handler '%s' missing on module '%s'" % (attribute, module_name),
                      "errorType": "Runtime.HandlerNotFound", "stackTrace": []}
    return handler, None


def main():
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    timeout_seconds = float(os.environ["RUNNER_TIMEOUT_SECONDS"])
    # The answers keep the pipe stdout was; the function's own prints go to
    # the log (stderr) from here on.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    started = time.monotonic()
    handler, init_error = load_handler(os.environ["_HANDLER"])
    modules = {name: getattr(sys.modules.get(name), "__file__", None) for name in WATCHED_MODULES}
    answers.write(json.dumps({"init": {"error": init_error, "python": "python%d.%d" % sys.version_info[:2],
                                       "sys_path": sys.path, "modules": modules,
                                       "seconds": round(time.monotonic() - started, 3)}}) + "\n")

    for line in sys.stdin:
        if not line.strip():
            continue
        call = json.loads(line)
        request_id = call.get("request_id") or str(uuid.uuid4())
        sys.stderr.write("START RequestId: %s Version: $LATEST\n" % request_id)
        sys.stderr.flush()
        began = time.monotonic()
        if init_error is not None:
            answer = {"error": init_error}
        else:
            context = LambdaContext(request_id, call.get("invoked_function_arn"), timeout_seconds)
            try:
                result = handler(call["event"], context)
            except Exception as exc:
                answer = {"error": error_of(exc)}
            else:
                try:
                    json.dumps(result)
                    answer = {"result": result}
                except (TypeError, ValueError) as exc:  # Lambda cannot return it either
                    answer = {"error": error_of(exc, "Runtime.MarshalError")}
        sys.stdout.flush()
        sys.stderr.write("END RequestId: %s\nREPORT RequestId: %s\tDuration: %.2f ms\n"
                         % (request_id, request_id, (time.monotonic() - began) * 1000))
        sys.stderr.flush()
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
