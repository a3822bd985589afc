"""Cold start of the functions: what importing the handler module costs in a
fresh interpreter, against what the third-party dependencies cost alone,
and the size of the deployment artifact.

All the functions are in app.py, so one import is every function's cold
start. The measurements run on an artifact laid out as Chalice packages it:
requirements.txt installed into a directory of its own (nothing of the
development tools), Chalice's runtime module, app.py and chalicelib/. The
dependencies are installed once and reused while requirements.txt is
unchanged (.bench/cold-start/). The artifact carries bytecode compiled for
the Lambda's Python, as a deployment should: without it, every cold start
compiles the sources again (and cannot keep what it compiled).

Each measurement is a fresh `python -S` (no site-packages: only the
artifact and the standard library are importable, as in Lambda), with
AWS_LAMBDA_FUNCTION_NAME set as Lambda sets it (so the JSON logging is set
up as in Lambda), that imports one thing and reports its CPU time, its wall
time and its peak memory (peak RSS); several runs, interleaved. The target
is on CPU time at the fastest run (see addition_percent): on a shared
machine the wall time mostly says how long the import waited for a core,
and the median how busy the neighbours were.

    python -m bench.cold_start [DIR]   # this part alone; DIR: another checkout's app.py and chalicelib/"""
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from bench.report import Targets, number, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".bench", "cold-start")
# Chalice deploys for the Python it runs on: the project's.
LAMBDA_PYTHON = "%d.%d" % sys.version_info[:2]
RUNS = 15
# Our code's share of the cold start, over the dependencies' own.
MAX_ADDITION_PERCENT = 20
# requirements.txt's packages, and Chalice's runtime, which app.py imports.
# PynamoDB's package __init__ is empty: the library is pynamodb.models (its
# attributes, indexes, connection and expressions), as any user imports it.
DEPENDENCIES = ("boto3", "pynamodb.models", "stripe", "jwt", "aws_lambda_powertools", "chalice")

# What each probe imports. The dependencies alone are their entry modules;
# `import app` brings whatever of them our code uses on top.
SUBJECTS = (
    ("python", "the interpreter alone", ""),
    ("dependencies", "import " + ", ".join(DEPENDENCIES), "import " + ", ".join(DEPENDENCIES)),
    ("app", "import app (every function's handler module)", "import app"),
    ("app+webhook", "import app, then build the webhook's acknowledgement",
     "import app\nfrom chalicelib import services\nservices.get_deliveries()"),
    ("app+events", "import app, then build stripe_events' services",
     "import app\nfrom chalicelib import services\nservices.get_queued_events()"),
)

# The peak RSS is the process's own: VmHWM, where there is /proc. Linux's
# ru_maxrss also counts the image the process was forked from before its
# exec, which from `make bench` (moto holding 100,000 items) is the bench's.
PROBE = r"""
import json, resource, sys, time


def peak_kb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


sys.path.insert(0, sys.argv[1])
source = sys.argv[2]
started, cpu = time.perf_counter(), time.process_time()
exec(compile(source, "<probe>", "exec"), {"__name__": "probe"})
cpu, wall = time.process_time() - cpu, time.perf_counter() - started
print(json.dumps({"cpu": cpu, "wall": wall, "maxrss_kb": peak_kb()}))
"""

# As in Lambda (whose runtime names the function): the JSON logging is set
# up at import. The settings the service construction reads; nothing is
# contacted.
PROBE_ENVIRONMENT = {
    "AWS_LAMBDA_FUNCTION_NAME": "stripe-connector-cold-start",
    "STRIPE_SECRET_KEY": "sk_test_cold_start",
    "STRIPE_CLIENT_ID": "ca_cold_start",
    "STRIPE_WEBHOOK_SECRET": "whsec_cold_start",
    "AUTH_JWT_SECRET": "cold-start-secret-of-at-least-thirty-two-bytes",
    "APP_BASE_URL": "https://app.customerhub.test",
    "OAUTH_REDIRECT_URI": "https://api.customerhub.test/connectors/stripe/oauth/callback",
    "AWS_ACCESS_KEY_ID": "cold-start",
    "AWS_SECRET_ACCESS_KEY": "cold-start",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class ColdStartError(Exception):
    """The artifact could not be built or a probe failed."""


@dataclass
class Probe:
    key: str
    label: str
    # CPU time (user + system) is what the import costs; wall time also
    # counts the waits for a core, which on a shared machine say more about
    # the neighbours than about the import.
    seconds: List[float] = field(default_factory=list)
    wall: List[float] = field(default_factory=list)
    maxrss_kb: List[int] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fastest(self) -> float:
        return min(self.seconds)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_maxrss_kb(self) -> float:
        return statistics.median(self.maxrss_kb)


@dataclass
class Artifact:
    path: str
    files: int
    unzipped_bytes: int
    zipped_bytes: int
    zipped_without_bytecode: int
    dependencies_reused: bool


def lambda_python() -> str:
    """An interpreter of the Lambda's Python version: this one, when it is."""
    if "%d.%d" % sys.version_info[:2] == LAMBDA_PYTHON:
        return sys.executable
    found = shutil.which("python" + LAMBDA_PYTHON)
    if not found:
        raise ColdStartError("No python%s to compile and measure with" % LAMBDA_PYTHON)
    return found


def dependencies(python: str) -> Tuple[str, bool]:
    """requirements.txt installed into a directory of its own, once per
    version of the file (and of the Python): (its path, whether it was reused)."""
    with open(os.path.join(ROOT, "requirements.txt"), "rb") as f:
        key = hashlib.sha256(f.read() + LAMBDA_PYTHON.encode()).hexdigest()[:16]
    target = os.path.join(CACHE, "deps-" + key)
    if os.path.exists(os.path.join(target, ".complete")):
        return target, True
    os.makedirs(CACHE, exist_ok=True)
    for stale in os.listdir(CACHE):
        if stale.startswith("deps-"):
            shutil.rmtree(os.path.join(CACHE, stale), ignore_errors=True)
    print("  installing requirements.txt into %s ..." % os.path.relpath(target, ROOT), file=sys.stderr, flush=True)
    answer = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", target, "-r", os.path.join(ROOT, "requirements.txt")],
        capture_output=True, text=True)
    if answer.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise ColdStartError("pip could not install requirements.txt: %s" % answer.stderr.strip()[-2000:])
    open(os.path.join(target, ".complete"), "w").close()
    return target, False


def chalice_runtime() -> List[Tuple[str, str]]:
    """The two files of Chalice that a deployment carries (its packager
    leaves the rest of the framework, the CLI and deployer, behind)."""
    import chalice
    import chalice.app

    return [(chalice.app.__file__, "chalice/app.py"), (chalice.__file__, "chalice/__init__.py")]


def build_artifact(python: str, source: str = ROOT) -> Artifact:
    """The artifact of the app.py and chalicelib/ found in `source` (this
    checkout, or another one to compare with)."""
    deps, reused = dependencies(python)
    path = os.path.join(CACHE, "artifact")
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(deps, path, ignore=shutil.ignore_patterns(".complete", "__pycache__"))
    # Chalice cherry-picks its runtime: a chalice installed as a dependency
    # would be left out of the zip.
    shutil.rmtree(os.path.join(path, "chalice"), ignore_errors=True)
    for original, relative in chalice_runtime():
        os.makedirs(os.path.dirname(os.path.join(path, relative)), exist_ok=True)
        shutil.copyfile(original, os.path.join(path, relative))
    shutil.copyfile(os.path.join(source, "app.py"), os.path.join(path, "app.py"))
    shutil.copytree(os.path.join(source, "chalicelib"), os.path.join(path, "chalicelib"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    zipped_without = zip_size(path)
    # unchecked-hash: the .pyc is used as shipped, whatever the file times
    # in the zip say (a timestamp check that failed would compile again on
    # every cold start, with nowhere to keep the result).
    answer = subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                             path], capture_output=True, text=True)
    if answer.returncode != 0:
        raise ColdStartError("compileall failed: %s" % (answer.stdout + answer.stderr).strip()[-2000:])
    files, unzipped = 0, 0
    for root, _, names in os.walk(path):
        for name in names:
            files += 1
            unzipped += os.path.getsize(os.path.join(root, name))
    return Artifact(path, files, unzipped, zip_size(path), zipped_without, reused)


def zip_size(path: str) -> int:
    """The size of the directory zipped as Chalice zips it (deflated)."""
    with tempfile.TemporaryDirectory() as scratch:
        target = os.path.join(scratch, "deployment.zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zipped:
            for root, _, names in os.walk(path):
                for name in sorted(names):
                    full = os.path.join(root, name)
                    zipped.write(full, os.path.relpath(full, path))
        return os.path.getsize(target)


def probe(python: str, artifact: str, source: str) -> Dict[str, float]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(PROBE_ENVIRONMENT)
    # -S: no site-packages, only the artifact and the standard library.
    # -B: nothing written; the artifact's own bytecode is what is read.
    answer = subprocess.run([python, "-S", "-B", "-c", PROBE, artifact, source],
                            capture_output=True, text=True, env=env, cwd=artifact)
    if answer.returncode != 0:
        raise ColdStartError("Probe %r failed: %s" % (source, answer.stderr.strip()[-2000:]))
    return json.loads(answer.stdout.strip().splitlines()[-1])


def measure(python: str, artifact: str, runs: int = RUNS) -> Dict[str, Probe]:
    probes = {key: Probe(key, label) for key, label, _ in SUBJECTS}
    # A first round, not counted: it reads the artifact into the page cache.
    for _, _, source in SUBJECTS:
        probe(python, artifact, source)
    # Interleaved, so that whatever else the machine does falls on every subject alike.
    for _ in range(runs):
        for key, _, source in SUBJECTS:
            found = probe(python, artifact, source)
            probes[key].seconds.append(found["cpu"])
            probes[key].wall.append(found["wall"])
            probes[key].maxrss_kb.append(found["maxrss_kb"])
    return probes


def addition_percent(probes: Dict[str, Probe]) -> float:
    """Our import's CPU time over the dependencies', each at its fastest run:
    what the import itself takes. Whatever else the machine runs only adds
    to a run (caches, cores), and on a shared machine the medians of
    back-to-back runs of the same code were seen 10 points apart."""
    deps = probes["dependencies"].fastest
    return 100.0 * (probes["app"].fastest - deps) / deps


def import_profile(python: str, artifact: str, source: str) -> Dict[str, float]:
    """Python's -X importtime of `source`: each module loaded, with the time
    its own import took (not counting the modules it imported)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(PROBE_ENVIRONMENT)
    answer = subprocess.run([python, "-S", "-B", "-X", "importtime", "-c",
                             "import sys; sys.path.insert(0, sys.argv[1]); exec(sys.argv[2])", artifact, source],
                            capture_output=True, text=True, env=env, cwd=artifact)
    if answer.returncode != 0:
        raise ColdStartError("Profiling %r failed: %s" % (source, answer.stderr.strip()[-2000:]))
    found = {}
    for line in answer.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = [part.strip() for part in line[len("import time:"):].split("|")]
        found[name] = int(self_us) / 1e6
    return found


def added_by_app(python: str, artifact: str, runs: int = 3) -> List[Tuple[str, float, int]]:
    """What `import app` loads that the dependencies' entry modules do not,
    by top-level package: (package, self time, modules), the median of
    `runs`, longest first."""
    sources = dict((key, source) for key, _, source in SUBJECTS)
    baseline = set(import_profile(python, artifact, sources["dependencies"]))
    times: Dict[str, List[float]] = {}
    modules: Dict[str, int] = {}
    for _ in range(runs):
        grouped: Dict[str, float] = {}
        counted: Dict[str, int] = {}
        for name, took in import_profile(python, artifact, sources["app"]).items():
            if name in baseline:
                continue
            package = name.split(".")[0]
            grouped[package] = grouped.get(package, 0.0) + took
            counted[package] = counted.get(package, 0) + 1
        for package, took in grouped.items():
            times.setdefault(package, []).append(took)
            modules[package] = counted[package]
    rows = [(package, statistics.median(found + [0.0] * (runs - len(found))), modules[package])
            for package, found in times.items()]
    return sorted(rows, key=lambda row: -row[1])


def run(sandbox, targets: Targets, runs: int = RUNS, source: str = ROOT) -> str:
    python = lambda_python()
    artifact = build_artifact(python, source)
    print("  %s; probing %d runs each ..." % ("dependencies reused" if artifact.dependencies_reused
                                             else "dependencies installed", runs), file=sys.stderr, flush=True)
    probes = measure(python, artifact.path, runs)
    percent = addition_percent(probes)
    target = targets.at_most("cold start: our import over the dependencies' (% CPU)", percent,
                             MAX_ADDITION_PERCENT, 1)
    return render(probes, artifact, percent, target.verdict, added_by_app(python, artifact.path), runs)


def render(probes: Dict[str, Probe], artifact: Artifact, percent: float, verdict: str,
           added: List[Tuple[str, float, int]], runs: int) -> str:
    rows = []
    python = probes["python"]
    for key, label, _ in SUBJECTS:
        p = probes[key]
        rows.append((label, "%.1f ms" % (p.fastest * 1000), "%.1f ms" % (p.median_seconds * 1000),
                     "%.1f ms" % (max(p.seconds) * 1000), "%.1f ms" % (p.median_wall * 1000),
                     "%s MiB" % number(p.median_maxrss_kb / 1024, 1),
                     "+%s MiB" % number((p.median_maxrss_kb - python.median_maxrss_kb) / 1024, 1)))
    deps, app = probes["dependencies"], probes["app"]
    mib = 1024 * 1024
    return "\n".join([
        table("Cold start: imports in a fresh interpreter (python %s -S on the artifact; %d runs each)"
              % (LAMBDA_PYTHON, runs),
              ("what", "CPU fastest", "median", "slowest", "wall median", "peak RSS", "over the interpreter"),
              rows,
              notes=("Our code's addition: %.1f ms of CPU over the dependencies' %.1f ms, fastest runs = %.1f%% "
                     "(target < %d%%: %s); memory +%s MiB (medians)."
                     % ((app.fastest - deps.fastest) * 1000, deps.fastest * 1000, percent, MAX_ADDITION_PERCENT,
                        verdict, number((app.median_maxrss_kb - deps.median_maxrss_kb) / 1024, 1)),
                     "The dependencies alone are their entry modules (pynamodb.models: PynamoDB's package "
                     "__init__ is empty); `import app` adds our modules and whatever of the dependencies they "
                     "load on top.")),
        table("Cold start: what `import app` loads beyond the dependencies' entry modules",
              ("package", "modules", "import time"),
              [(package, number(count), "%.1f ms" % (took * 1000)) for package, took, count in added],
              notes=("-X importtime, each module's own time summed by top-level package, median of 3 runs; "
                     "the profiler's overhead makes these larger than the probes' times.",)),
        table("Deployment artifact (requirements.txt + Chalice's runtime + app.py + chalicelib, zipped as "
              "Chalice zips it)",
              ("what", "size"),
              [("zip, with bytecode for python %s" % LAMBDA_PYTHON, "%s MiB" % number(artifact.zipped_bytes / mib, 2)),
               ("zip, sources only", "%s MiB" % number(artifact.zipped_without_bytecode / mib, 2)),
               ("unzipped, with bytecode (%s files)" % number(artifact.files),
                "%s MiB" % number(artifact.unzipped_bytes / mib, 2))],
              notes=("Lambda takes at most 50 MiB zipped and 250 MiB unzipped. The bytecode is compiled with "
                     "--invalidation-mode unchecked-hash: used as shipped, whatever the zip's file times.",
                     "Dependencies %s (%s)." % ("reused" if artifact.dependencies_reused else "installed",
                                                 os.path.relpath(os.path.dirname(artifact.path), ROOT)))),
    ])


if __name__ == "__main__":
    # python -m bench.cold_start [DIR]: DIR holds the app.py and chalicelib/
    # to measure (another checkout, to compare with); by default this one's.
    found = Targets()
    print(run(None, found, source=os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
    print(found.render())
    sys.exit(1 if found.missed else 0)
