"""The content hash an approval binds to."""

from datetime import UTC, datetime

from mailhygiene.purge.model import ItemAction, PlanKind, PlannedMessage, content_hash, plan_ref


def item(uid: int, **changes: object) -> PlannedMessage:
    values: dict[str, object] = {
        "message_row": uid,
        "folder": "INBOX",
        "uidvalidity": 7,
        "uid": uid,
        "message_id": f"m{uid}@x",
        "size": 100,
        "internal_date": None,
        "action": ItemAction.MOVE,
        "reason_kind": "default",
        "reason_name": "default",
        "reason_detail": "",
    }
    values.update(changes)
    return PlannedMessage(**values)  # type: ignore[arg-type]


def digest(items: list[PlannedMessage], **kw: object) -> str:
    args: dict[str, object] = {"kind": PlanKind.PURGE, "account": "a", "policy_hash": "p"}
    args.update(kw)
    return content_hash(items=items, **args)  # type: ignore[arg-type]


def test_hash_ignores_order_but_not_content():
    base = digest([item(1), item(2)])
    assert base == digest([item(2), item(1)])
    assert base != digest([item(1)])
    assert base != digest([item(1), item(2, size=101)])
    assert base != digest([item(1), item(2, uidvalidity=8)])
    assert base != digest([item(1), item(2, action=ItemAction.DELETE)])
    assert base != digest([item(1), item(2)], account="b")
    assert base != digest([item(1), item(2)], policy_hash="q")


def test_plan_ref_is_readable():
    assert plan_ref(datetime(2026, 11, 23, tzinfo=UTC), "abc123") == "P-20261123-abc123"
