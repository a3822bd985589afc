"""build/<stage>/ as `make deploy` uploads it: Chalice's template with
infra/template.yaml merged in (sam.yaml), and the functions' deployment.zip
with bytecode for the Lambda's Python beside every module.

    make package STAGE=dev        # rm -rf build/dev, then:
    python -m infra.package --stage dev [OUT_DIR]

`chalice package` zips sources only. Lambda unpacks the zip into /var/task,
which is read-only: Python can keep nothing it compiles there, so without
bytecode in the zip every cold start compiles every module it imports,
dependencies included. Here each .py in the zip gets its
__pycache__/<name>.cpython-311.pyc (for python3.11), compiled with the
unchecked-hash invalidation mode: the import uses it as shipped, never
comparing it with the source's time or size (which the zip's fixed file
times would contradict). It is compiled by the interpreter running this,
so that interpreter must be the Lambda runtime's version; packaging refuses
otherwise. Every entry Chalice wrote is kept with its permissions; the zip
is written in name order with fixed file times, so the same tree packages
to the same bytes.

The web ACL's IP set of Stripe's webhook addresses, which the template
leaves empty, is filled in sam.yaml from infra/stripe_webhook_ips.json
(infra/stripe_ips.py); sam.yaml is written again as Chalice writes it
(yaml.safe_dump), so the same tree still packages to the same bytes.

No AWS account is asked: Chalice wants a region only to name the
partition, so any will do (AWS_DEFAULT_REGION, else us-east-1).
"""
import argparse
import importlib.util
import os
import py_compile
import stat
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from infra.project import ROOT, TEMPLATE_PATH, load_template, stages
from infra.stripe_ips import ADDRESSES_PATH, InvalidAddressList, ip_set_addresses
from infra.stripe_ips import load as load_stripe_addresses

REGION = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
# Where Lambda unpacks the zip: the file names the bytecode records (what
# a traceback shows when the source is not beside it).
TASK_ROOT = "/var/task"
# Chalice's own file time for every entry (the earliest a zip can hold).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
BYTECODE_MODE = (stat.S_IFREG | 0o644) << 16
# The IP set infra/template.yaml leaves empty for Stripe's webhook addresses.
STRIPE_IP_SET = "StripeWebhookIPSet"


class RuntimeMismatch(Exception):
    """The bytecode this interpreter compiles would not be what the Lambda runtime reads."""


def package(stage: str, out_dir: str, region: str = REGION) -> str:
    """build/<stage> (or out_dir) packaged, its zip with bytecode; the path of sam.yaml."""
    out_dir = os.path.abspath(out_dir)
    chalice = os.path.join(os.path.dirname(sys.executable), "chalice")
    environment = dict(os.environ, AWS_DEFAULT_REGION=region)
    subprocess.run([chalice, "package", "--stage", stage, "--merge-template", TEMPLATE_PATH,
                    "--template-format", "yaml", out_dir],
                   cwd=ROOT, env=environment, check=True, stdout=subprocess.DEVNULL)
    sam_path = os.path.join(out_dir, "sam.yaml")
    fill_stripe_webhook_ips(sam_path)
    check_interpreter(lambda_runtime(load_template(sam_path)))
    add_bytecode(os.path.join(out_dir, "deployment.zip"))
    return sam_path


def fill_stripe_webhook_ips(sam_path: str, addresses_path: str = ADDRESSES_PATH) -> int:
    """Writes the file's addresses into the packaged template's IP set; how
    many. Raises InvalidAddressList, sam.yaml untouched, for a bad file."""
    addresses = ip_set_addresses(load_stripe_addresses(addresses_path))
    with open(sam_path, encoding="utf-8") as f:
        sam = yaml.safe_load(f)
    ip_set = (sam.get("Resources") or {}).get(STRIPE_IP_SET)
    if not ip_set or ip_set.get("Type") != "AWS::WAFv2::IPSet":
        raise InvalidAddressList("%s has no AWS::WAFv2::IPSet %s to fill" % (sam_path, STRIPE_IP_SET))
    ip_set.setdefault("Properties", {})["Addresses"] = addresses
    with open(sam_path, "w", encoding="utf-8") as f:
        f.write(yaml.safe_dump(sam, allow_unicode=True))  # as Chalice's package writes it
    return len(addresses)


def lambda_runtime(sam: Dict[str, Any]) -> str:
    """The one runtime (python3.11) of the packaged template's functions that run the zip."""
    default = ((sam.get("Globals") or {}).get("Function") or {}).get("Runtime")
    runtimes = {(resource.get("Properties") or {}).get("Runtime", default)
                for resource in (sam.get("Resources") or {}).values()
                if resource.get("Type") == "AWS::Serverless::Function"
                and (resource.get("Properties") or {}).get("CodeUri") == "./deployment.zip"}
    if len(runtimes) != 1 or not isinstance(next(iter(runtimes)), str):
        named = ", ".join(sorted(str(runtime) for runtime in runtimes)) or "none"
        raise RuntimeMismatch("The packaged functions should share one Python runtime; they name %s" % named)
    return runtimes.pop()


def check_interpreter(runtime: str, version: Optional[Sequence[int]] = None) -> None:
    running = "python%d.%d" % tuple((version or sys.version_info)[:2])
    if runtime != running:
        # Another version's runtime would ignore the .pyc (its magic number
        # differs) and compile every module at each cold start again.
        raise RuntimeMismatch(
            "The functions run on %s but this is %s: its bytecode would be ignored by Lambda. "
            "Package with a %s interpreter (a virtualenv made with it)." % (runtime, running, runtime))


def bytecode_name(source_name: str) -> str:
    """a/b.py → a/__pycache__/b.cpython-311.pyc (this interpreter's cache tag)."""
    return importlib.util.cache_from_source(source_name, optimization="")


def add_bytecode(zip_path: str) -> int:
    """Rewrites the zip with a .pyc beside each .py; the number of modules compiled."""
    with zipfile.ZipFile(zip_path) as original:
        entries = [(info, original.read(info)) for info in original.infolist()]
    sources = [(info.filename, data) for info, data in entries if info.filename.endswith(".py")]
    bytecode = compile_sources(sources)
    # A zip packaged before keeps nothing stale: its .pyc are the ones just compiled.
    kept = [(info, data) for info, data in entries if info.filename not in bytecode]
    written = [(_entry_like(info), data) for info, data in kept]
    written += [(_bytecode_entry(name), data) for name, data in bytecode.items()]
    written.sort(key=lambda entry: entry[0].filename)
    scratch = tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(zip_path)), suffix=".zip",
                                          delete=False)
    try:
        with scratch, zipfile.ZipFile(scratch, "w") as rewritten:
            for info, data in written:
                rewritten.writestr(info, data)
        os.chmod(scratch.name, stat.S_IMODE(os.stat(zip_path).st_mode))  # not the scratch file's 0600
        os.replace(scratch.name, zip_path)
    except BaseException:
        os.unlink(scratch.name)
        raise
    return len(bytecode)


# Compiles each source in the scratch directory (n.py → n.pyc) as named in
# the arguments: `n /var/task/<name>` pairs.
_COMPILE = """
import py_compile, sys
args = sys.argv[1:]
for number, shown in zip(args[::2], args[1::2]):
    py_compile.compile(number + ".py", cfile=number + ".pyc", dfile=shown, doraise=True, optimize=0,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def compile_sources(sources: List[Tuple[str, bytes]]) -> Dict[str, bytes]:
    """{bytecode's name in the zip: .pyc} for each (name, source) pair.

    Compiled in a fresh interpreter with a fixed hash seed: marshal writes
    an object as a reference when something else holds it too, and a set's
    members in hash order, so bytecode compiled in a process that has run
    other work (a test run, say) or under another seed can differ for the
    same source."""
    with tempfile.TemporaryDirectory() as scratch:
        arguments = []
        for number, (name, data) in enumerate(sources):
            with open(os.path.join(scratch, "%d.py" % number), "wb") as f:
                f.write(data)
            arguments += [str(number), "%s/%s" % (TASK_ROOT, name)]
        # A module that does not compile fails here, named by its path in /var/task.
        done = subprocess.run([sys.executable, "-I", "-c", _COMPILE, *arguments], cwd=scratch,
                              env={"PYTHONHASHSEED": "0"}, capture_output=True, text=True)
        if done.returncode != 0:
            error = done.stderr.strip()
            # What py_compile said: the module's path in /var/task, the line, the error.
            said = error[error.find("PyCompileError:") + len("PyCompileError:"):].strip() if error else "failed"
            raise py_compile.PyCompileError(SyntaxError, SyntaxError(said), "", said)
        compiled = {}
        for number, (name, _) in enumerate(sources):
            with open(os.path.join(scratch, "%d.pyc" % number), "rb") as f:
                compiled[bytecode_name(name)] = f.read()
    return compiled


def _entry_like(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
    entry.compress_type = info.compress_type
    entry.create_system = info.create_system
    entry.external_attr = info.external_attr
    return entry


def _bytecode_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.create_system = 3  # Unix, so that unzip honours the mode
    entry.external_attr = BYTECODE_MODE
    return entry


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, help="the Chalice stage (.chalice/config.json)")
    parser.add_argument("out_dir", nargs="?", help="where to write sam.yaml and deployment.zip (default build/<stage>)")
    parser.add_argument("--region", default=REGION,
                        help="the partition's region (default AWS_DEFAULT_REGION or us-east-1)")
    args = parser.parse_args(argv)
    if args.stage not in stages():
        parser.error("no stage %r in .chalice/config.json (%s)" % (args.stage, ", ".join(stages())))
    out_dir = args.out_dir or os.path.join(ROOT, "build", args.stage)
    try:
        package(args.stage, out_dir, args.region)
    except RuntimeMismatch as exc:
        print("python -m infra.package: %s" % exc, file=sys.stderr)
        return 2
    except InvalidAddressList as exc:
        print("python -m infra.package: Stripe's webhook addresses: %s (python -m infra.stripe_ips --refresh)"
              % exc, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print("python -m infra.package: chalice package failed (exit status %d)" % exc.returncode, file=sys.stderr)
        return 1
    zip_path = os.path.join(out_dir, "deployment.zip")
    with zipfile.ZipFile(zip_path) as zipped:
        modules = sum(1 for name in zipped.namelist() if name.endswith(".pyc"))
    print("%s: sam.yaml, deployment.zip (%.1f MiB, bytecode for %d modules)"
          % (os.path.relpath(out_dir), os.path.getsize(zip_path) / (1024 * 1024), modules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
