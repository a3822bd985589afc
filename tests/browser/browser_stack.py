"""The local stack as the browser tests drive it beside the browser (a
module of its own name: test modules here import it, and `conftest` is
every test folder's name)."""
from typing import Any, Dict, List

import requests

from local.run import LOCAL_ACCOUNT
from local.stack_runner import StackProcess
from tests.helpers import settled


class Stack(StackProcess):
    """The local stack (local/stack_runner.py), with what a test arranges
    without the browser: through the API and the sandbox's dashboard forms,
    as curl would."""

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.api_url + path, timeout=30,
                                headers={"Authorization": "Bearer " + self.tokens["admin"]}, **kwargs)

    def card(self) -> Dict[str, Any]:
        return self.admin("GET", "/connectors/stripe").json()

    def ensure_connected(self) -> Dict[str, Any]:
        """Connected, with the connection's import done: a subscription made
        while it runs may be taken by the import before its webhook, and be
        recorded as imported rather than as the Stripe event a test reads."""
        if self.card()["status"] != "connected":
            self.connect(LOCAL_ACCOUNT)
        return settled(self.card, lambda card: not card["sync"] or card["sync"]["state"] != "importing", seconds=60)

    def ensure_disconnected(self) -> None:
        assert self.admin("DELETE", "/connectors/stripe").status_code == 200

    def grantable_subscriptions(self, account: str = LOCAL_ACCOUNT) -> List[str]:
        """The ids of the account's subscriptions an import takes (active,
        trialing, past due), as Stripe's API lists them."""
        found, after = [], None
        while True:
            query = {"status": "all", "limit": "100", **({"starting_after": after} if after else {})}
            answer = requests.get(self.sandbox_url + "/v1/subscriptions", params=query, timeout=30,
                                  headers=self.stripe_headers(account))
            assert answer.status_code == 200, answer.text
            page = answer.json()
            found += [item["id"] for item in page["data"] if item["status"] in ("active", "trialing", "past_due")]
            if not page["has_more"]:
                return found
            after = page["data"][-1]["id"]

    def run_scheduled(self, function_name: str) -> None:
        """A scheduled function once, as `make catch-up` runs it against the stack."""
        done = self.run_module("local.scheduled", function_name)
        assert done.returncode == 0, done.stderr[-2000:]
