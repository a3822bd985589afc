"""The project's deploy configuration as the infrastructure reads it: the
Chalice stages (.chalice/config.json) and the merge template."""
import json
import os
from typing import Any, Dict, List

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PATH = os.path.join(ROOT, ".chalice", "config.json")
TEMPLATE_PATH = os.path.join(ROOT, "infra", "template.yaml")


def chalice_config() -> Dict[str, Any]:
    with open(CONFIG_PATH) as f:
        return json.load(f)


def stages() -> List[str]:
    return sorted(chalice_config()["stages"])


def stage_environment(stage: str) -> Dict[str, str]:
    """The environment Chalice gives the functions of a stage."""
    config = chalice_config()
    if stage not in config["stages"]:
        raise ValueError("No stage %r in .chalice/config.json (%s)" % (stage, ", ".join(stages())))
    environment = dict(config.get("environment_variables") or {})
    environment.update(config["stages"][stage].get("environment_variables") or {})
    return environment


def policy_path(function_name: str) -> str:
    """The IAM policy file Chalice gives a function's role."""
    name = chalice_config()["lambda_functions"][function_name]["iam_policy_file"]
    return os.path.join(ROOT, ".chalice", name)


class _TemplateLoader(yaml.SafeLoader):
    """CloudFormation's short forms (!Ref, !Sub, !GetAtt A.B, ...) as the
    long forms Chalice's own loader makes of them."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: str = TEMPLATE_PATH) -> Dict[str, Any]:
    with open(path) as f:
        return yaml.load(f, Loader=_TemplateLoader)  # noqa: S506 (a SafeLoader)


def substitute(value: Any, parameters: Dict[str, str]) -> Any:
    """A template value with `!Sub` of parameters resolved; other intrinsics stay."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        text = value["Fn::Sub"]
        for name, replacement in parameters.items():
            text = text.replace("${%s}" % name, replacement)
        return text
    return value
