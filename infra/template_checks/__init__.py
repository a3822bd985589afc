"""The rehearsal's checks on a stage's translated CloudFormation
(infra/rehearse.py runs them after SAM's transform and cfn-lint): the API's
one stage with its throttling, access log, metrics and alarms, and the web
ACL in front of it with its rules and Stripe's webhook addresses; each
function's settings as .chalice/config.json gives them, and the announcer
created after the bus it puts on; the schedules; no dangling reference; no
placeholder left.

One module a check, as the report names them; what callers use is imported
from here, so that a check can move between modules without them knowing."""
from infra.template_checks.api_stage import API_STAGE, api_stages, check_api_stage
from infra.template_checks.findings import Finding, resource_path, resources_of_type
from infra.template_checks.functions import (FUNCTIONS, chalice_functions, chalice_logical_id, check_announcers,
                                             check_functions)
from infra.template_checks.placeholders import (PLACEHOLDERS, TO_SET, check_placeholders, config_location,
                                                config_placeholders)
from infra.template_checks.references import PSEUDO_PARAMETERS, REFERENCES, check_references
from infra.template_checks.schedules import SCHEDULES, check_schedules, schedule_problem
from infra.template_checks.web_acl import (DEFAULT_INSPECTION_LIMIT, FUNCTION_BODY_LIMIT, INSPECTION_LIMITS,
                                           WEB_ACL, WEBHOOK_PATH, check_web_acl)

__all__ = [
    "API_STAGE", "WEB_ACL", "FUNCTIONS", "SCHEDULES", "REFERENCES", "PLACEHOLDERS",
    "Finding", "resource_path", "resources_of_type",
    "api_stages", "check_api_stage",
    "check_web_acl", "WEBHOOK_PATH", "FUNCTION_BODY_LIMIT", "INSPECTION_LIMITS", "DEFAULT_INSPECTION_LIMIT",
    "chalice_logical_id", "chalice_functions", "check_functions", "check_announcers",
    "schedule_problem", "check_schedules",
    "PSEUDO_PARAMETERS", "check_references",
    "TO_SET", "config_location", "check_placeholders", "config_placeholders",
]
