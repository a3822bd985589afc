"""What a test injects into the sandbox: a failure Stripe would answer
(a status and its error body, a number of times), or a delay before an
answer."""
from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass
class Failure:
    method: str
    path: str
    status: int
    error: Dict[str, Any]
    remaining: int
    should_retry: Optional[bool]
    retry_after: Optional[int]
    rate_limited_reason: Optional[str] = None


@dataclass
class Delay:
    method: str
    path: str
    seconds: float
    remaining: int
