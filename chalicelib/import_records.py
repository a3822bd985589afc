"""The card's view of a site's latest import (chalicelib/imports.py runs them)."""
from typing import Optional

from chalicelib.clock import iso
from chalicelib.models import CONNECTED, ConnectionModel, ImportModel

IMPORTING = "importing"
DONE = "done"
FAILED = "failed"


def sync_card(record: Optional[ImportModel], connection: Optional[ConnectionModel]) -> Optional[dict]:
    """The card's `sync`: the latest import of the account the site is
    connected to now."""
    if (record is None or connection is None or connection.status != CONNECTED
            or record.account_id != connection.account_id):
        return None
    return {"state": record.state, "started_at": iso(record.started_at), "finished_at": iso(record.finished_at),
            "subscriptions": int(record.subscriptions), "matched": int(record.matched),
            "unmatched": int(record.unmatched)}


class ImportStore:
    def get(self, site_id: str) -> Optional[ImportModel]:
        try:
            return ImportModel.get(site_id, consistent_read=True)
        except ImportModel.DoesNotExist:
            return None

    def sync_of(self, connection: Optional[ConnectionModel]) -> Optional[dict]:
        if connection is None or connection.status != CONNECTED:
            return None
        return sync_card(self.get(connection.site_id), connection)
