"""Rate limits on the routes that cost Stripe requests on a site's account,
counted in DynamoDB with one conditional write per call, whether the call is
allowed or refused.

Two rules, one table (TTL on `expires_at`, so counters of the past vanish):
- once per period, from the previous start that was allowed: the counter is
  when that start was; a refusal reads it back from the failed write
  (ReturnValuesOnConditionCheckFailure=ALL_OLD), so says when without a read.
- at most a number of calls per window of the clock (a minute from :00):
  one counter per window, whose end is known without a read.

A refused call writes nothing: only allowed calls count."""
import math
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Protocol

from botocore.exceptions import ClientError

from chalicelib.clock import Clock, utc_now
from chalicelib.errors import RateLimited

# What DynamoDB answers when a write's condition does not hold (models.LOST_RACE).
CONDITION_FAILED = "ConditionalCheckFailedException"
# The counters' attributes, as models.RateLimitModel declares them.
ATTRIBUTES = ("started_at", "calls", "expires_at")

# POST /connectors/stripe/sync: an import lists every subscription of the account.
SYNC_PERIOD = timedelta(minutes=10)
# POST /billing/portal/sessions: each costs Stripe requests on the site's account.
PORTAL_SESSIONS = 10
PORTAL_SESSIONS_PERIOD = timedelta(minutes=1)


def _escaped(part: str) -> str:
    return part.replace("\\", "\\\\").replace("#", "\\#")


def limit_key(rule: str, *parts: str) -> str:
    """A counter's key; the parts are escaped so that no two (site, user)
    pairs share a counter."""
    return "#".join((rule,) + tuple(_escaped(part) for part in parts))


def sync_key(site_id: str) -> str:
    return limit_key("sync", site_id)


def portal_session_key(site_id: str, user_id: str) -> str:
    return limit_key("portal-session", site_id, user_id)


def wait_in_words(seconds: int) -> str:
    if seconds < 120:
        return "%d second%s" % (seconds, "" if seconds == 1 else "s")
    return "%d minutes" % math.ceil(seconds / 60)


def whole_seconds(seconds: float) -> int:
    """Retry-After: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(round(seconds, 6)))


class RateLimits(Protocol):
    """The port: each method returns when the call may go ahead and raises
    RateLimited, saying when to try again, when it may not."""

    def once_per(self, key: str, period: timedelta, refusal: str) -> None: ...

    def at_most(self, key: str, calls: int, period: timedelta, refusal: str) -> None: ...

    def hold(self, key: str, period: timedelta) -> None: ...


class NoLimits:
    """For services built without a store of limits (tests of other things)."""

    def once_per(self, key: str, period: timedelta, refusal: str) -> None:
        return None

    def at_most(self, key: str, calls: int, period: timedelta, refusal: str) -> None:
        return None

    def hold(self, key: str, period: timedelta) -> None:
        return None


class DynamoRateLimits:
    """The rate limits table (models.RateLimitModel), through a DynamoDB
    client: PynamoDB 6.1 passes no ReturnValuesOnConditionCheckFailure on a
    single write, nor keeps the item DynamoDB sends back with a refusal."""

    def __init__(self, connect: Callable[[], Any], table_name: str, clock: Clock = utc_now):
        # Made on first use, as the work queue's client: most invocations of
        # the API function never ask for a limit.
        self._connect = connect
        self._client: Any = None
        self._table_name = table_name
        self._clock = clock

    def once_per(self, key: str, period: timedelta, refusal: str) -> None:
        now = self._clock().timestamp()
        seconds = period.total_seconds()

        def wait(item: dict) -> float:
            started_at = _number(item, "started_at")
            return seconds if started_at is None else started_at + seconds - now

        self._update(
            key, "SET #started_at = :now, #expires_at = :expires",
            # A counter TTL has not deleted yet is as good as gone.
            "attribute_not_exists(#started_at) OR #started_at <= :since",
            {":now": now, ":expires": math.ceil(now + seconds), ":since": now - seconds},
            refusal, wait, return_old=True)

    def hold(self, key: str, period: timedelta) -> None:
        """Start `key`'s once_per period again now, whatever it held: the
        holder is still at work (a sweep's shard, queued again)."""
        now = self._clock().timestamp()
        self._dynamodb().update_item(
            TableName=self._table_name, Key={"limit_key": {"S": key}},
            UpdateExpression="SET #started_at = :now, #expires_at = :expires",
            ExpressionAttributeNames={"#started_at": "started_at", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":now": {"N": repr(now)},
                                       ":expires": {"N": repr(math.ceil(now + period.total_seconds()))}})

    def at_most(self, key: str, calls: int, period: timedelta, refusal: str) -> None:
        now = self._clock().timestamp()
        seconds = period.total_seconds()
        window_end = (math.floor(now / seconds) + 1) * seconds
        self._update(
            "%s#%d" % (key, window_end), "ADD #calls :one SET #expires_at = :expires",
            "attribute_not_exists(#calls) OR #calls < :calls",
            {":one": 1, ":expires": math.ceil(window_end), ":calls": calls},
            refusal, lambda item: window_end - now)

    def _update(self, key: str, update: str, condition: str, values: Dict[str, float], refusal: str,
                wait: Callable[[dict], float], return_old: bool = False) -> None:
        """One conditional write; RateLimited when its condition does not
        hold, with the wait worked out from the item DynamoDB sends back
        (only when asked for: return_old)."""
        request = {
            "TableName": self._table_name,
            "Key": {"limit_key": {"S": key}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#" + name: name for name in ATTRIBUTES
                                         if "#" + name in update + condition},
            "ExpressionAttributeValues": {name: {"N": repr(value)} for name, value in values.items()},
        }
        if return_old:
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            self._dynamodb().update_item(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                raise
            seconds = whole_seconds(wait(exc.response.get("Item") or {}))
            raise RateLimited("%s: try again in %s" % (refusal, wait_in_words(seconds)),
                              retry_after=seconds) from exc

    def _dynamodb(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client


def _number(item: dict, name: str) -> Optional[float]:
    value = (item.get(name) or {}).get("N")
    return None if value is None else float(value)
