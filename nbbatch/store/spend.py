"""Money, as the ledger tells it: what the done images cost, what the runs spent (every
billed attempt, and those that may have been billed), and what the pending images may cost."""

from __future__ import annotations

import sqlite3
from typing import Any

from nbbatch.store.records import CostSummary, Spend


def cost_summary(conn: sqlite3.Connection) -> CostSummary:
    """What the done images of the manifest cost, what every run on this folder spent,
    and what the pending images are expected to cost."""
    on_disk, done = conn.execute(  # read straight through, as in LedgerView.done_files
        "SELECT total(cost_usd), count(*) FROM images WHERE +in_manifest = 1"
        " AND +status = 'done'"
    ).fetchone()
    (remaining,) = conn.execute(
        "SELECT total(estimate_usd) FROM images WHERE in_manifest = 1 AND status = 'pending'"
    ).fetchone()
    return CostSummary(on_disk, done, spend_among(conn, "", ()), remaining)


def spend_among(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> Spend:
    """Successful attempts at their cost, and the attempts that may have been billed
    (interrupted, or lost after sending), among those `where` selects ("" for all)."""
    rows = conn.execute(
        "SELECT CASE WHEN outcome = 'success' THEN 'billed' WHEN outcome = 'interrupted'"
        " THEN 'interrupted' ELSE 'lost' END AS kind, count(*), total(cost_usd)"
        " FROM attempts WHERE (outcome = 'success' OR possibly_billed = 1)" + where +
        " GROUP BY kind", params,
    ).fetchall()
    found = {kind: (int(n), usd) for kind, n, usd in rows}
    (_, billed), (interrupted, interrupted_usd), (lost, lost_usd) = (
        found.get(kind, (0, 0.0)) for kind in ("billed", "interrupted", "lost"))
    return Spend(billed, interrupted, interrupted_usd, lost, lost_usd)
