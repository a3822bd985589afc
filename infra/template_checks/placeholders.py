"""No placeholder left in a value: each function variable that still holds
one is named once, with where to set it and what it should be."""
from typing import Any, Dict, Iterator, List, Optional, Tuple

from chalice.config import Config

from chalicelib.settings import is_placeholder
from infra.project import chalice_config
from infra.template_checks.findings import Finding

PLACEHOLDERS = "placeholders"

# What each setting a deployer must write is, when a placeholder holds it.
TO_SET = {
    "STRIPE_CLIENT_ID": "the platform's Connect client ID (ca_…, Stripe Dashboard → Settings → Connect;"
                        " live mode for prod, test mode for dev)",
    "APP_BASE_URL": "CustomerHub's https origin for the stage",
    "OAUTH_REDIRECT_URI": "the redirect URI registered in Stripe's Connect settings",
}


def _strings(node: Any, path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, path + (str(key),))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, path + (str(index),))
    elif isinstance(node, str):
        yield path, node


def config_location(variable: str, stage: str, config: Dict[str, Any]) -> str:
    """Where in .chalice/config.json a function's variable is set for a stage."""
    stage_config = config.get("stages", {}).get(stage, {})
    if variable in (stage_config.get("environment_variables") or {}):
        return ".chalice/config.json stages.%s.environment_variables" % stage
    if variable in (config.get("environment_variables") or {}):
        return ".chalice/config.json environment_variables"
    return ".chalice/config.json (the function's own environment_variables)"


def check_placeholders(template: Dict[str, Any], stage: str, config: Dict[str, Any], blocking: bool) -> List[Finding]:
    """Every value still holding a placeholder: each function variable once,
    with where to set it and what it should be; anything else by its path."""
    variables: Dict[Tuple[str, str], List[str]] = {}
    findings = []
    for path, value in _strings(template):
        if not is_placeholder(value):
            continue
        if len(path) >= 6 and path[0] == "Resources" and path[2:5] == ("Properties", "Environment", "Variables"):
            variables.setdefault((path[5], value), []).append(path[1])
        else:
            findings.append(Finding(PLACEHOLDERS, "/".join(path), "%r is a placeholder" % value, blocking))
    for (variable, value), functions in sorted(variables.items()):
        what = TO_SET.get(variable, "its real value")
        findings.append(Finding(
            PLACEHOLDERS, config_location(variable, stage, config),
            "%s is the placeholder %r (in %d function(s)): set it to %s before deploying %s"
            % (variable, value, len(functions), what, stage), blocking))
    return findings


def config_placeholders(stage: str, config: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """The stage's function variables that hold a placeholder, read from
    .chalice/config.json alone: what the rehearsal should report."""
    config = config if config is not None else chalice_config()
    found = {}
    for name in config.get("lambda_functions") or {"api_handler": {}}:
        for variable, value in Config(chalice_stage=stage, function_name=name,
                                      config_from_disk=config).environment_variables.items():
            if isinstance(value, str) and is_placeholder(value):
                found[variable] = value
    return found
