"""The deployment zip carries bytecode for the Lambda's Python, and a cold
start uses it: /var/task is read-only, so a module without its .pyc there
is compiled again at every cold start (infra/package.py)."""
import importlib.util
import json
import os
import stat
import subprocess
import sys
import zipfile

import pytest

from infra.package import RuntimeMismatch, add_bytecode, bytecode_name, check_interpreter, lambda_runtime, package

REGION = "us-east-1"
# A .pyc's header: magic, flags, then (hash-based) the source's hash.
HASH_BASED_UNCHECKED = 0b01

# What a cold start runs, as Lambda's runtime does: a fresh interpreter, no
# site-packages, the task directory first on the path, nothing written.
COLD_START = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import app
task = sys.argv[1] + "/"
loaded = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(task)]
print(json.dumps({"cached": app.__spec__.cached, "modules": len(loaded)}))
"""


def zip_of(directory):
    return os.path.join(directory, "deployment.zip")


def test_every_module_of_each_stage_has_its_bytecode_beside_it_used_as_shipped(packaged):
    for stage, directory in packaged.items():
        with zipfile.ZipFile(zip_of(directory)) as zipped:
            names = set(zipped.namelist())
            sources = sorted(name for name in names if name.endswith(".py"))
            assert "app.py" in sources
            missing = [name for name in sources if bytecode_name(name) not in names]
            assert not missing, "%s: no %s bytecode for %d modules, e.g. %s" % (
                stage, sys.implementation.cache_tag, len(missing), missing[:5])
            for name in sources:
                header = zipped.read(bytecode_name(name))[:16]
                assert header[:4] == importlib.util.MAGIC_NUMBER, name
                assert int.from_bytes(header[4:8], "little") == HASH_BASED_UNCHECKED, name
                assert header[8:16] == importlib.util.source_hash(zipped.read(name)), name


def test_a_cold_start_of_the_artifact_imports_the_app_from_the_shipped_bytecode_alone(packaged, tmp_path):
    task = tmp_path / "task"
    with zipfile.ZipFile(zip_of(packaged["dev"])) as zipped:
        zipped.extractall(task)
    # Every source in the unpacked artifact now fails if compiled: the import
    # can only succeed on the .pyc as shipped.
    for source in task.rglob("*.py"):
        source.write_text("raise ImportError('compiled from source at cold start: %s')\n" % source.name)
    shipped = sorted(task.rglob("*.pyc"))

    answer = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", COLD_START, str(task)],
                            capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                            cwd=str(task))

    assert answer.returncode == 0, answer.stderr[-2000:]
    found = json.loads(answer.stdout.strip().splitlines()[-1])
    assert found["cached"] == str(task / "__pycache__" / ("app.%s.pyc" % sys.implementation.cache_tag))
    assert found["modules"] > 100  # the dependencies too, not only app.py
    assert sorted(task.rglob("*.pyc")) == shipped  # nothing compiled and kept beside them


def test_packaging_the_same_tree_twice_makes_the_same_bytes(packaged, tmp_path):
    again = str(tmp_path / "again")
    package("dev", again, REGION)

    with open(zip_of(packaged["dev"]), "rb") as first, open(zip_of(again), "rb") as second:
        assert first.read() == second.read()


def test_adding_bytecode_keeps_every_entry_and_its_mode_in_name_order_with_fixed_times(tmp_path):
    path = str(tmp_path / "deployment.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, mode, text in (("pkg/tool.py", 0o755, "print('tool')\n"), ("pkg/data.json", 0o600, "{}"),
                                 ("app.py", 0o644, "import pkg\n"), ("pkg/__init__.py", 0o644, "")):
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 6, 7, 8, 10))
            info.create_system, info.external_attr = 3, (stat.S_IFREG | mode) << 16
            zipped.writestr(info, text)

    assert add_bytecode(path) == 3

    with zipfile.ZipFile(path) as zipped:
        entries = {info.filename: info for info in zipped.infolist()}
        assert list(entries) == sorted(entries)
        assert {name: stat.S_IMODE(info.external_attr >> 16) for name, info in entries.items()
                if not name.endswith(".pyc")} == {"app.py": 0o644, "pkg/__init__.py": 0o644,
                                                   "pkg/data.json": 0o600, "pkg/tool.py": 0o755}
        assert zipped.read("pkg/tool.py") == b"print('tool')\n"
        tag = sys.implementation.cache_tag
        assert {"__pycache__/app.%s.pyc" % tag, "pkg/__pycache__/__init__.%s.pyc" % tag,
                "pkg/__pycache__/tool.%s.pyc" % tag} <= set(entries)
        assert {info.date_time for info in entries.values()} == {(1980, 1, 1, 0, 0, 0)}
    with open(path, "rb") as f:
        once = f.read()
    add_bytecode(path)
    with open(path, "rb") as f:
        assert f.read() == once


def test_packaging_refuses_an_interpreter_other_than_the_functions_runtime():
    with pytest.raises(RuntimeMismatch, match=r"run on python3\.12 but this is python3\.11"):
        check_interpreter("python3.12", (3, 11))
    check_interpreter("python3.11", (3, 11))


def test_packaging_refuses_functions_on_different_runtimes():
    sam = {"Resources": {name: {"Type": "AWS::Serverless::Function",
                                "Properties": {"Runtime": runtime, "CodeUri": "./deployment.zip"}}
                         for name, runtime in (("A", "python3.11"), ("B", "python3.12"))}}
    with pytest.raises(RuntimeMismatch, match="python3.11, python3.12"):
        lambda_runtime(sam)


def test_the_packaged_functions_run_on_the_python_that_packages_them(sam):
    for stage, template in sam.items():
        assert lambda_runtime(template) == "python%d.%d" % sys.version_info[:2], stage
