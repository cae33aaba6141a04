"""Read-only aggregate queries for status and reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailhygiene.store.models import Account, Folder, Message


def account_summaries(session: Session) -> list[dict[str, Any]]:
    counts = {
        folder_id: (count, size or 0)
        for folder_id, count, size in session.execute(
            select(Message.folder_id, func.count(), func.sum(Message.size)).group_by(
                Message.folder_id
            )
        )
    }
    accounts: list[dict[str, Any]] = []
    for account in session.scalars(select(Account).order_by(Account.name)):
        folders = []
        for folder in session.scalars(
            select(Folder).where(Folder.account_id == account.id).order_by(Folder.name)
        ):
            count, size = counts.get(folder.id, (0, 0))
            folders.append(
                {
                    "name": folder.name,
                    "messages": count,
                    "bytes": int(size),
                    "uidvalidity": folder.uidvalidity,
                    "highestmodseq": folder.highestmodseq,
                    "last_sync_at": folder.last_sync_at,
                }
            )
        accounts.append(
            {
                "name": account.name,
                "host": account.host,
                "username": account.username,
                "capabilities": account.capabilities,
                "last_sync_at": account.last_sync_at,
                "folders": folders,
            }
        )
    return accounts
