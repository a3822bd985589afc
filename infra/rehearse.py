"""A stage's stack as CloudFormation would receive it, checked offline: the
last step before `make deploy`.

    make rehearse STAGE=prod      # packages build/prod, then runs:
    python -m infra.rehearse --stage prod [build/prod] [--allow-placeholders]

`make lint` lints build/<stage>/sam.yaml, which is still a SAM template:
cfn-lint (since 1.54) validates SAM resources against schemas of its own and
no longer expands them, so whatever SAM's transform makes (the API's stages
and deployment, the functions' event source mappings, schedule rules and
permissions) goes unlinted. Here the packaged template goes through what
`make deploy` puts it through, without an AWS account:

1. the artifact: each function's CodeUri is a zip that holds its handler
   (module and name), and is then named by an S3 URI as `aws cloudformation
   package` would name it;
2. SAM's transform, by aws-sam-translator (the library CloudFormation's
   transform runs), for the stage's parameters in a region of our choosing;
3. cfn-lint on the CloudFormation that comes out (build/<stage>/cloudformation.json);
4. what neither would call a mistake: one API Gateway stage, the one the
   stage's config names, with infra/template.yaml's throttling, access log and
   metrics, and the API alarms watching it; every function with the stage's
   settings from .chalice/config.json; every schedule a valid expression;
   no Ref, GetAtt, Sub, DependsOn or Condition naming what is not there;
   no placeholder (`REPLACE`, `placeholder` in any case, or `…`) left in a value
   (infra/template_checks/).

A placeholder holds back `prod` and is a note elsewhere (dev is where the
stack is tried before its values are final). Prod's config holds
`ca_REPLACE_WITH_LIVE_CONNECT_CLIENT_ID` until someone with the live
platform's Connect settings writes the real ID there, and a stack deployed
with it could connect no Stripe account; so `make rehearse STAGE=prod`
fails, naming each value, where to set it and what it should be, until
they are set. `ALLOW_PLACEHOLDERS=1` (`--allow-placeholders`) makes
them notes, to rehearse the rest of prod before the live values are known.
`make test` stays green either way: its test asserts that the rehearsal
reports exactly the placeholders prod's config holds, whichever they are.

What only AWS can tell stays untold: whether CloudFormation creates what
passes here (a service's refusal, a limit of the account, a name taken), and
whether the real transform, run later by CloudFormation at its own version,
makes the same resources as the pinned translator.

Exit status: 0 when nothing holds the stage back, 1 when a finding does,
2 for a stage or a packaged directory that is not there.
"""
import argparse
import ast
import copy
import dataclasses
import hashlib
import json
import os
import re
import sys
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import boto3
from cfnlint import ManualArgs
from cfnlint.api import lint as cfn_lint
from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

from infra.package import package as package_stage
from infra.project import ROOT, chalice_config, load_template, stages
from infra.template_checks import (API_STAGE, FUNCTIONS, PLACEHOLDERS, REFERENCES, SCHEDULES, WEB_ACL, Finding,
                                   check_api_stage, check_functions, check_placeholders, check_references,
                                   check_schedules, check_web_acl, resource_path)

# Chalice wants a region only to name the partition, as in the Makefile's
# package; SAM's transform and cfn-lint take the same one.
REGION = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
# Where `aws cloudformation package` would put the artifact; never asked.
ARTIFACT_BUCKET = "rehearsal-artifacts"
# Stages a placeholder holds back; elsewhere it is a note.
PLACEHOLDERS_BLOCK = ("prod",)

# The checks, in the order the report lists them.
ARTIFACT, TRANSLATE, LINT = "artifact", "SAM transform", "cfn-lint"
CHECKS = (ARTIFACT, TRANSLATE, LINT, API_STAGE, WEB_ACL, FUNCTIONS, SCHEDULES, REFERENCES, PLACEHOLDERS)


@dataclasses.dataclass
class Rehearsal:
    stage: str
    region: str
    findings: List[Finding]
    template: Optional[Dict[str, Any]]  # the translated CloudFormation; None when the transform refused
    template_text: str = ""  # what cfn-lint read; its line numbers are the findings'

    @property
    def blocking(self) -> List[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def ready(self) -> bool:
        return not self.blocking

    def of(self, check: str) -> List[Finding]:
        return [f for f in self.findings if f.check == check]

    def report(self) -> str:
        lines = []
        for check in CHECKS:
            found = self.of(check)
            if self.template is None and check not in (ARTIFACT, TRANSLATE):
                lines.append("  --   %s: not run, the transform refused the template" % check)
                continue
            if not found:
                lines.append("  ok   %s" % check)
            for finding in found:
                lines.append("  %s %s: %s" % ("FAIL" if finding.blocking else "note", check, finding))
        verdict = ("%s passes the rehearsal" % self.stage if self.ready else
                   "%s fails the rehearsal: %d finding(s) hold it back" % (self.stage, len(self.blocking)))
        return "\n".join(lines + [verdict])


# ------------------------------------------------------------------ package

def package(stage: str, out_dir: str, region: str = REGION) -> str:
    """build/<stage> as `make package` makes it (infra/package.py); the path of sam.yaml."""
    return package_stage(stage, out_dir, region)


def load_packaged(packaged_dir: str) -> Dict[str, Any]:
    return load_template(os.path.join(packaged_dir, "sam.yaml"))


# ------------------------------------------------------------------ rehearse

def rehearse(sam: Dict[str, Any], stage: str, packaged_dir: str, region: str = REGION,
             allow_placeholders: bool = False, config: Optional[Dict[str, Any]] = None) -> Rehearsal:
    """The packaged template `sam` of `stage` (its artifacts in packaged_dir),
    transformed, linted and checked."""
    config = config if config is not None else chalice_config()
    findings = check_artifacts(sam, packaged_dir)
    try:
        template = translate(for_upload(sam, stage, packaged_dir), stage, region)
    except InvalidDocumentException as exc:
        findings += [_refusal(cause.message) for cause in exc.causes]
        return Rehearsal(stage, region, findings, None)
    text = json.dumps(template, indent=2)
    findings += lint(text, region)
    findings += check_api_stage(template, stage, config)
    findings += check_web_acl(template, stage, config)
    findings += check_functions(template, stage, config)
    findings += check_schedules(template)
    findings += check_references(template)
    findings += check_placeholders(template, stage, config,
                                   blocking=stage in PLACEHOLDERS_BLOCK and not allow_placeholders)
    return Rehearsal(stage, region, findings, template, text)


REFUSED_RESOURCE = re.compile(r"Resource with id \[([^\]]+)\] is invalid\. (.*)", re.S)


def _refusal(message: str) -> Finding:
    resource = REFUSED_RESOURCE.match(message)
    if resource:
        return Finding(TRANSLATE, resource_path(resource.group(1)), resource.group(2))
    return Finding(TRANSLATE, resource_path(None), message)


def serverless_functions(sam: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {name: r for name, r in sam.get("Resources", {}).items() if r.get("Type") == "AWS::Serverless::Function"}


def check_artifacts(sam: Dict[str, Any], packaged_dir: str) -> List[Finding]:
    """Each function's CodeUri is a zip in packaged_dir holding its handler."""
    findings = []
    for name, resource in serverless_functions(sam).items():
        properties = resource.get("Properties", {})
        code_uri = properties.get("CodeUri")
        if code_uri is None:
            findings.append(Finding(ARTIFACT, resource_path(name, "Properties"),
                                    "no CodeUri: `aws cloudformation package` would upload %s itself" % packaged_dir))
            continue
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            continue  # already uploaded: nothing here to look into
        path = os.path.normpath(os.path.join(packaged_dir, code_uri))
        if not zipfile.is_zipfile(path):
            findings.append(Finding(ARTIFACT, resource_path(name, "Properties", "CodeUri"),
                                    "%s is not a zip in %s" % (code_uri, packaged_dir)))
            continue
        handler = properties.get("Handler")
        problem = _missing_handler(path, handler) if isinstance(handler, str) else "no Handler"
        if problem:
            findings.append(Finding(ARTIFACT, resource_path(name, "Properties", "Handler"), problem))
    return findings


def _missing_handler(zip_path: str, handler: str) -> Optional[str]:
    module, _, attribute = handler.rpartition(".")
    if not module or not attribute:
        return "%r is not module.name" % handler
    names = _module_names(zip_path, module)
    if names is None:
        return "%s has no module %s (for %s)" % (os.path.basename(zip_path), module, handler)
    if attribute not in names:
        return "%s defines no %s at its top level (for %s)" % (module, attribute, handler)
    return None


_MODULES: Dict[Tuple[str, float, str], Optional[frozenset]] = {}


def _module_names(zip_path: str, module: str) -> Optional[frozenset]:
    """The names a module in the zip binds at its top level, read (not run)."""
    key = (zip_path, os.path.getmtime(zip_path), module)
    if key not in _MODULES:
        stem = module.replace(".", "/")
        with zipfile.ZipFile(zip_path) as archive:
            present = set(archive.namelist())
            source = next((archive.read(p) for p in (stem + ".py", stem + "/__init__.py") if p in present), None)
        _MODULES[key] = None if source is None else frozenset(_top_level_names(ast.parse(source)))
    return _MODULES[key]


def _top_level_names(tree: ast.Module) -> Iterator[str]:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        yield leaf.id
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield (alias.asname or alias.name).split(".")[0]


def for_upload(sam: Dict[str, Any], stage: str, packaged_dir: str) -> Dict[str, Any]:
    """The template as `aws cloudformation package` hands it on: each local
    CodeUri an S3 URI (the transform takes no other)."""
    uploaded = copy.deepcopy(sam)
    for resource in serverless_functions(uploaded).values():
        properties = resource.get("Properties", {})
        code_uri = properties.get("CodeUri")
        if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
            path = os.path.join(packaged_dir, code_uri)
            digest = _md5(path) if os.path.isfile(path) else "missing"
            properties["CodeUri"] = "s3://%s/stripe-connector/%s/%s" % (ARTIFACT_BUCKET, stage, digest)
    return uploaded


def _md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def translate(sam: Dict[str, Any], stage: str, region: str = REGION) -> Dict[str, Any]:
    """SAM's transform, as transform.transform runs it, in `region` with no
    account. The functions name their own roles (Chalice's), so no managed
    policy is looked up by name: the map is empty, and a policy named by name
    would fail the transform here instead of asking IAM."""
    template = copy.deepcopy(sam)
    parameters = {"Stage": stage}
    to_py27_compatible_template(template, parameters)
    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region), metrics=metrics)
    try:
        translated = translator.translate(template, parameter_values=parameters, get_managed_policy_map=dict)
    finally:
        metrics.publish()  # to nowhere: only so that it does not warn of unpublished metrics
    return undo_mark_unicode_str_in_template(translated)


def lint(text: str, region: str = REGION) -> List[Finding]:
    findings = []
    for match in cfn_lint(text, config=ManualArgs(regions=[region])):
        path = getattr(match, "path", None)
        where = "/".join(str(p) for p in path) if path else "cloudformation.json:%d" % match.linenumber
        findings.append(Finding(LINT, where, "%s %s (cloudformation.json:%d)"
                                % (match.rule.id, match.message, match.linenumber)))
    return findings


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.rehearse", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, help="the Chalice stage (.chalice/config.json)")
    parser.add_argument("packaged", nargs="?", help="the stage's packaged directory (default build/<stage>)")
    parser.add_argument("--region", default=REGION, help="the stack's region (default AWS_DEFAULT_REGION or us-east-1)")
    parser.add_argument("--allow-placeholders", action="store_true",
                        help="report placeholders in prod as notes instead of failing")
    parser.add_argument("--deployed", action="store_true",
                        help="then create the stack in moto and start each function from the zip (infra/deployed.py)")
    args = parser.parse_args(argv)
    if args.stage not in stages():
        parser.error("no stage %r in .chalice/config.json (%s)" % (args.stage, ", ".join(stages())))
    packaged_dir = args.packaged or os.path.join(ROOT, "build", args.stage)
    if not os.path.isfile(os.path.join(packaged_dir, "sam.yaml")):
        parser.error("no %s: `make package STAGE=%s` first" % (os.path.join(packaged_dir, "sam.yaml"), args.stage))
    rehearsal = rehearse(load_packaged(packaged_dir), args.stage, packaged_dir, args.region, args.allow_placeholders)
    translated = os.path.join(packaged_dir, "cloudformation.json")
    if rehearsal.template is not None:
        with open(translated, "w") as f:
            f.write(rehearsal.template_text)
    print("Rehearsal of %s in %s: %s → %s (%d resources)" % (
        args.stage, args.region, os.path.relpath(os.path.join(packaged_dir, "sam.yaml")),
        os.path.relpath(translated) if rehearsal.template is not None else "nothing",
        len((rehearsal.template or {}).get("Resources", {}))), file=out)
    print(rehearsal.report(), file=out)
    failed_deployed = 0
    if args.deployed and rehearsal.template is not None:
        from infra.deployed import rehearse_deployed  # moto is imported only when asked for
        failed_deployed = rehearse_deployed(args.stage, rehearsal.template, packaged_dir, out, args.region)
    return 0 if rehearsal.ready and not failed_deployed else 1


if __name__ == "__main__":
    sys.exit(main())
