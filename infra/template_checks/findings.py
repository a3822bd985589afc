"""What every check of the package reports, and the reading of the template
they share."""
import dataclasses
from typing import Any, Dict, Optional


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str
    where: str  # a path in the template, Resources/<id>/…, or a file
    message: str
    blocking: bool = True

    def __str__(self) -> str:
        return "%s: %s" % (self.where, self.message)


def resource_path(logical_id: Optional[str], *rest: Any) -> str:
    if logical_id is None:
        return "the template"
    return "/".join(["Resources", logical_id] + [str(part) for part in rest])


def resources_of_type(template: Dict[str, Any], kind: str) -> Dict[str, Dict[str, Any]]:
    return {name: r for name, r in template.get("Resources", {}).items() if r.get("Type") == kind}



def getatt_target(value: Any) -> Optional[str]:
    """The resource a Fn::GetAtt names, or None when the value is no GetAtt."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return (target.split(".", 1)[0] if isinstance(target, str) else (target or [None])[0])
    return None
