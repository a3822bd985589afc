"""No Ref, GetAtt, Sub, DependsOn or Condition naming what the template
does not have."""
import re
from typing import Any, Dict, Iterator, List, Tuple

from infra.template_checks.findings import Finding, resource_path

REFERENCES = "references"
PSEUDO_PARAMETERS = frozenset({"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
                               "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"})
SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def check_references(template: Dict[str, Any]) -> List[Finding]:
    """Ref, GetAtt, Sub, DependsOn and Condition name what the template has."""
    resources = set(template.get("Resources", {}))
    names = resources | set(template.get("Parameters", {})) | PSEUDO_PARAMETERS
    conditions = set(template.get("Conditions", {}))
    findings = []

    def dangling(path: str, message: str) -> None:
        findings.append(Finding(REFERENCES, path, message))

    def sub_variables(text: str) -> Iterator[str]:
        for variable in SUB_VARIABLE.findall(text):
            if not variable.startswith("!"):  # ${!Literal} is text
                yield variable

    def visit(node: Any, path: Tuple[str, ...]) -> None:
        where = "/".join(path)
        if isinstance(node, dict):
            if len(node) == 1:
                (key, value), = node.items()
                if key == "Ref" and isinstance(value, str) and value not in names:
                    dangling(where, "Ref to %s, which the template does not have" % value)
                elif key == "Fn::GetAtt":
                    target = value.split(".", 1)[0] if isinstance(value, str) else (value or [None])[0]
                    if isinstance(target, str) and target not in resources:
                        dangling(where, "GetAtt of %s, which the template does not have" % target)
                elif key == "Fn::Sub":
                    if isinstance(value, str):
                        text, local = value, {}
                    else:
                        text, local = value[0], value[1] if len(value) > 1 else {}
                    for variable in sub_variables(text) if isinstance(text, str) else ():
                        head = variable if variable in names else variable.split(".", 1)[0]
                        if variable not in local and head not in names:
                            dangling(where, "Sub of ${%s}, which the template does not have" % variable)
                elif key == "Fn::If" and isinstance(value, list) and value and value[0] not in conditions:
                    dangling(where, "If on condition %s, which the template does not have" % value[0])
                elif key == "Condition" and path[:1] == ("Conditions",) and value not in conditions:
                    dangling(where, "condition %s, which the template does not have" % value)
            for key, value in node.items():
                visit(value, path + (str(key),))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                visit(value, path + (str(index),))

    for name, resource in template.get("Resources", {}).items():
        depends = resource.get("DependsOn", [])
        for target in [depends] if isinstance(depends, str) else depends:
            if target not in resources:
                dangling(resource_path(name, "DependsOn"), "on %s, which the template does not have" % target)
        if "Condition" in resource and resource["Condition"] not in conditions:
            dangling(resource_path(name, "Condition"), "%s is not a condition of the template" % resource["Condition"])
    for section in ("Conditions", "Resources", "Outputs"):
        visit(template.get(section, {}), (section,))
    return findings
