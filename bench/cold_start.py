"""Cold start of the functions: what importing the handler module costs in a
fresh interpreter, against what the third-party dependencies cost alone,
and the size of the deployment artifact.

All the functions are in app.py, so one import is every function's cold
start. The measurements run on the artifact that ships:
build/dev/deployment.zip as `make package` makes it (infra/package.py:
Chalice's zip of requirements.txt, its runtime module, app.py and
chalicelib/, with the bytecode compiled for the Lambda's Python), packaged
again when it is missing or older than what goes in it, and unpacked as
Lambda unpacks it (.bench/cold-start/artifact). Without that bytecode every
cold start would compile the sources again, and could not keep what it
compiled (/var/task is read-only).

Each measurement is a fresh `python -S` (no site-packages: only the
artifact and the standard library are importable, as in Lambda), with
AWS_LAMBDA_FUNCTION_NAME set as Lambda sets it (so the JSON logging is set
up as in Lambda), that imports one thing and reports its CPU time, its wall
time and its peak memory (peak RSS); several runs, interleaved. The target
is on CPU time at the fastest run (see addition_percent): on a shared
machine the wall time mostly says how long the import waited for a core,
and the median how busy the neighbours were.

    python -m bench.cold_start [DIR]   # this part alone; DIR: another checkout's app.py and chalicelib/,
                                       # in place of ours in the shipped zip"""
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from bench.report import Targets, number, table
from infra.package import RuntimeMismatch, package

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".bench", "cold-start")
# The stage whose zip is measured: every stage ships the same code.
STAGE = "dev"
SHIPPED = os.path.join(ROOT, "build", STAGE)
# What the zip is made of: a zip older than any of these is packaged again.
PACKAGE_INPUTS = ("app.py", "chalicelib", "requirements.txt", ".chalice/config.json", "infra/template.yaml",
                  "infra/package.py")
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
    zip_path: str  # the zip unpacked
    packaged_now: bool


def lambda_python() -> str:
    """An interpreter of the Lambda's Python version: this one, when it is."""
    if "%d.%d" % sys.version_info[:2] == LAMBDA_PYTHON:
        return sys.executable
    found = shutil.which("python" + LAMBDA_PYTHON)
    if not found:
        raise ColdStartError("No python%s to compile and measure with" % LAMBDA_PYTHON)
    return found


def shipped_zip() -> Tuple[str, bool]:
    """build/<stage>/deployment.zip as `make package` makes it, packaged
    again when missing or older than what goes in it: (its path, whether
    it was packaged now)."""
    zip_path = os.path.join(SHIPPED, "deployment.zip")
    if os.path.isfile(zip_path) and os.path.getmtime(zip_path) >= newest_input():
        return zip_path, False
    print("  packaging %s ..." % os.path.relpath(SHIPPED, ROOT), file=sys.stderr, flush=True)
    try:
        package(STAGE, SHIPPED)
    except (RuntimeMismatch, subprocess.CalledProcessError) as exc:
        raise ColdStartError("Could not package %s: %s" % (STAGE, exc)) from exc
    return zip_path, True


def newest_input() -> float:
    times = []
    for relative in PACKAGE_INPUTS:
        top = os.path.join(ROOT, relative)
        if os.path.isfile(top):
            times.append(os.path.getmtime(top))
        for root, directories, names in os.walk(top):
            directories[:] = [name for name in directories if name != "__pycache__"]
            times += [os.path.getmtime(os.path.join(root, name)) for name in names]
    return max(times, default=0.0)


def build_artifact(python: str, source: str = ROOT, zip_path: Optional[str] = None) -> Artifact:
    """The shipped zip (or zip_path) unpacked as Lambda unpacks it into
    /var/task; with another checkout's app.py and chalicelib/ in place of
    ours when `source` is not this one (to compare with)."""
    packaged = False
    if zip_path is None:
        zip_path, packaged = shipped_zip()
    path = os.path.join(CACHE, "artifact")
    shutil.rmtree(path, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zipped:
        zipped.extractall(path)
    ours = os.path.realpath(source) == os.path.realpath(ROOT)
    if not ours:
        replace_our_code(python, path, source)
    files, unzipped = 0, 0
    for root, _, names in os.walk(path):
        for name in names:
            files += 1
            unzipped += os.path.getsize(os.path.join(root, name))
    zipped_bytes = os.path.getsize(zip_path) if ours else zip_size(path)
    return Artifact(path, files, unzipped, zipped_bytes, zip_size(path, bytecode=False), zip_path, packaged)


def replace_our_code(python: str, path: str, source: str) -> None:
    os.remove(os.path.join(path, "app.py"))
    shutil.rmtree(os.path.join(path, "chalicelib"))
    for stale in glob.glob(os.path.join(path, "__pycache__", "app.*.pyc")):
        os.remove(stale)
    shutil.copyfile(os.path.join(source, "app.py"), os.path.join(path, "app.py"))
    shutil.copytree(os.path.join(source, "chalicelib"), os.path.join(path, "chalicelib"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # As infra/package.py compiles the rest: unchecked-hash, used as shipped.
    answer = subprocess.run([python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                             os.path.join(path, "app.py"), os.path.join(path, "chalicelib")],
                            capture_output=True, text=True)
    if answer.returncode != 0:
        raise ColdStartError("compileall failed: %s" % (answer.stdout + answer.stderr).strip()[-2000:])


def zip_size(path: str, bytecode: bool = True) -> int:
    """The size of the directory zipped (deflated), with or without its .pyc."""
    with tempfile.TemporaryDirectory() as scratch:
        target = os.path.join(scratch, "deployment.zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zipped:
            for root, _, names in os.walk(path):
                for name in sorted(names):
                    if bytecode or not name.endswith(".pyc"):
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
    print("  %s unpacked; probing %d runs each ..." % (os.path.relpath(artifact.zip_path, ROOT), runs),
          file=sys.stderr, flush=True)
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
        table("Deployment artifact (%s, as `make package` ships it: requirements.txt + Chalice's runtime + "
              "app.py + chalicelib)" % os.path.relpath(artifact.zip_path, ROOT),
              ("what", "size"),
              [("zip, with bytecode for python %s" % LAMBDA_PYTHON, "%s MiB" % number(artifact.zipped_bytes / mib, 2)),
               ("zip, sources only", "%s MiB" % number(artifact.zipped_without_bytecode / mib, 2)),
               ("unzipped, with bytecode (%s files)" % number(artifact.files),
                "%s MiB" % number(artifact.unzipped_bytes / mib, 2))],
              notes=("Lambda takes at most 50 MiB zipped and 250 MiB unzipped. The bytecode is compiled "
                     "unchecked-hash (infra/package.py): used as shipped, whatever the zip's file times.",
                     "%s %s, unpacked into %s." % (os.path.relpath(artifact.zip_path, ROOT),
                                                   "packaged now" if artifact.packaged_now else "as found",
                                                   os.path.relpath(artifact.path, ROOT)))),
    ])


if __name__ == "__main__":
    # python -m bench.cold_start [DIR]: DIR holds the app.py and chalicelib/
    # to measure (another checkout, to compare with); by default this one's.
    found = Targets()
    print(run(None, found, source=os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
    print(found.render())
    sys.exit(1 if found.missed else 0)
