"""Every EventBridge schedule a valid expression."""
import re
from typing import Any, Dict, List, Optional

from infra.template_checks.findings import Finding, resource_path, resources_of_type

SCHEDULES = "schedules"
RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
CRON_FIELD = re.compile(r"[0-9A-Za-z*?,/#\-]+")


def schedule_problem(expression: Any) -> Optional[str]:
    """What is wrong with an EventBridge schedule expression, or None."""
    if not isinstance(expression, str):
        return "%r is not a literal expression" % (expression,)
    rate = RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            return "%s: a rate is at least 1" % expression
        if (value == 1) != (not unit.endswith("s")):
            return "%s: the unit is singular for 1 and plural otherwise" % expression
        return None
    if expression.startswith("cron(") and expression.endswith(")"):
        fields = expression[5:-1].split()
        if len(fields) != 6:
            return "%s: a cron has 6 fields (minutes hours day-of-month month day-of-week year)" % expression
        if not all(CRON_FIELD.fullmatch(f) for f in fields):
            return "%s: a field is not cron's" % expression
        if "?" not in (fields[2], fields[4]):
            return "%s: day-of-month or day-of-week must be ?" % expression
        return None
    return "%r is neither rate(…) nor cron(…)" % expression


def check_schedules(template: Dict[str, Any]) -> List[Finding]:
    findings = []
    for name, rule in resources_of_type(template, "AWS::Events::Rule").items():
        properties = rule.get("Properties", {})
        if "ScheduleExpression" in properties:
            problem = schedule_problem(properties["ScheduleExpression"])
            if problem:
                findings.append(Finding(SCHEDULES, resource_path(name, "Properties", "ScheduleExpression"), problem))
    return findings
