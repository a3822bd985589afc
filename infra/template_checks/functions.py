"""Each function's settings as .chalice/config.json gives them, and a
function that puts on a bus created after that bus."""
from typing import Any, Dict, List, Optional

from chalice.config import Config
from chalice.utils import to_cfn_resource_name

from infra.template_checks.findings import Finding, getatt_target, resource_path, resources_of_type

FUNCTIONS = "function settings"


def chalice_logical_id(name: str) -> str:
    """The logical id Chalice's package gives a function of the config."""
    return "APIHandler" if name == "api_handler" else to_cfn_resource_name(name)


def chalice_functions(template: Dict[str, Any], config: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """Chalice's name of each function → its logical id in the template (None
    when it is not there): those the config names, and any other function
    Chalice tagged, named by its handler."""
    functions = resources_of_type(template, "AWS::Lambda::Function")
    found: Dict[str, Optional[str]] = {
        name: chalice_logical_id(name) if chalice_logical_id(name) in functions else None
        for name in config.get("lambda_functions") or {}}
    for logical, resource in functions.items():
        properties = resource.get("Properties", {})
        tagged = any(tag.get("Key") == "aws-chalice" for tag in properties.get("Tags") or [])
        handler = properties.get("Handler")
        if tagged and logical not in found.values() and isinstance(handler, str):
            name = handler.rpartition(".")[2]
            found["api_handler" if name == "app" else name] = logical
    return found


def check_functions(template: Dict[str, Any], stage: str, config: Dict[str, Any]) -> List[Finding]:
    """Each function has the stage's environment, timeout and memory as
    Chalice resolves them from .chalice/config.json (after the merge and
    SAM's Globals, which could change them)."""
    findings = []
    for name, logical in sorted(chalice_functions(template, config).items()):
        if logical is None:
            findings.append(Finding(FUNCTIONS, resource_path(chalice_logical_id(name)),
                                    "no function for %s (.chalice/config.json)" % name))
            continue
        properties = template["Resources"][logical].get("Properties", {})
        settings = Config(chalice_stage=stage, function_name=name, config_from_disk=config)
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        for variable, value in sorted(settings.environment_variables.items()):
            if variables.get(variable) != value:
                findings.append(Finding(FUNCTIONS, resource_path(logical, "Properties", "Environment", "Variables",
                                                                  variable),
                                        "is %r, the config's %s is %r" % (variables.get(variable), stage, value)))
        for key, wanted in (("Timeout", settings.lambda_timeout), ("MemorySize", settings.lambda_memory_size)):
            if wanted is not None and properties.get(key) != wanted:
                findings.append(Finding(FUNCTIONS, resource_path(logical, "Properties", key),
                                        "is %r, the config's %s is %r" % (properties.get(key), stage, wanted)))
    return findings + check_announcers(template)


def check_announcers(template: Dict[str, Any]) -> List[Finding]:
    """A function whose role is the one a bus's policy lets put on it (the
    access bus: announce_access's) depends on that bus, so that neither it
    nor the stream trigger that runs it starts before the bus exists."""
    findings = []
    functions = resources_of_type(template, "AWS::Lambda::Function")
    for bus, resource in resources_of_type(template, "AWS::Events::EventBus").items():
        for role in _roles_let_put(resource):
            for name, function in sorted(functions.items()):
                if getatt_target((function.get("Properties") or {}).get("Role")) != role:
                    continue
                depends = function.get("DependsOn", [])
                if bus not in ([depends] if isinstance(depends, str) else depends):
                    findings.append(Finding(FUNCTIONS, resource_path(name, "DependsOn"),
                                            "does not depend on %s, the bus it puts on: CloudFormation may create"
                                            " it first, and its first puts would fail" % bus))
    return findings


def _roles_let_put(bus: Dict[str, Any]) -> List[str]:
    """The roles a bus's policy exempts from its Deny of events:PutEvents."""
    roles = []
    for statement in ((bus.get("Properties") or {}).get("Policy") or {}).get("Statement") or []:
        actions = statement.get("Action")
        if statement.get("Effect") != "Deny" or "events:PutEvents" not in (
                [actions] if isinstance(actions, str) else actions or []):
            continue
        exempt = ((statement.get("Condition") or {}).get("ArnNotEquals") or {}).get("aws:PrincipalArn")
        for value in exempt if isinstance(exempt, list) else [exempt]:
            role = getatt_target(value)
            if role:
                roles.append(role)
    return roles
