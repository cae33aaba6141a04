"""Policy governance: which rules ran, which were adopted, and the extend-only lock.

Every rules file a plan is made under is recorded as a *policy version* (its sha256,
its text when the caller read it, who first loaded it and when). ``rules adopt``
makes a version the policy in force. Once a version carrying ``[policy] lock =
"extend-only"`` is in force:

* adopting another version is refused when it weakens the policy in any way
  (``policy.compare.weakenings``: a shorter period, a removed rule, narrower or merely
  different conditions, weaker case protection, a removed lock …) — each weakening is
  listed in the refusal;
* planning under a rules file other than the version in force is refused
  (``admit_for_planning``, called by ``plan_purge``), so editing ``rules.toml`` cannot
  bypass the lock: the new file must be adopted first, and adoption checks it.

Without a lock in force, anything may be adopted and plans run under any file; the
versions are still recorded so ``rules history`` and ``rules diff`` can show them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from mailhygiene.audit import log as audit
from mailhygiene.audit.events import AuditTag
from mailhygiene.config.rules import parse_rules
from mailhygiene.errors import ConfigError, InputError, NotFoundError, SafetyRefusal
from mailhygiene.policy import EXTEND_ONLY, Policy
from mailhygiene.policy.compare import Effect, PolicyChange, compare_policies
from mailhygiene.store import governance_queries
from mailhygiene.store.models import PolicyVersion
from mailhygiene.store.session import Session, Store

__all__ = [
    "Adoption",
    "PolicyVersionView",
    "VersionDiff",
    "admit_for_planning",
    "adopt_policy",
    "diff_versions",
    "policy_history",
    "policy_in_force",
    "record_policy_version",
]


@dataclass(frozen=True)
class PolicyVersionView:
    id: int
    hash: str
    loaded_at: datetime
    loaded_by: str
    adopted: bool
    adopted_at: datetime | None
    adopted_by: str | None
    lock: str
    in_force: bool
    text_known: bool


@dataclass(frozen=True)
class Adoption:
    """The outcome of ``adopt_policy``: the version now in force and what changed."""

    version: PolicyVersionView
    previous: PolicyVersionView | None
    changes: tuple[PolicyChange, ...]
    already_in_force: bool


@dataclass(frozen=True)
class VersionDiff:
    old: PolicyVersionView | None  # None: the rules file as given, not (yet) recorded
    new: PolicyVersionView | None
    old_hash: str
    new_hash: str
    changes: tuple[PolicyChange, ...]


def _view(version: PolicyVersion, in_force: PolicyVersion | None) -> PolicyVersionView:
    return PolicyVersionView(
        id=version.id,
        hash=version.hash,
        loaded_at=version.loaded_at,
        loaded_by=version.loaded_by,
        adopted=version.adopted,
        adopted_at=version.adopted_at,
        adopted_by=version.adopted_by,
        lock=version.lock,
        in_force=in_force is not None and in_force.id == version.id,
        text_known=bool(version.text),
    )


def _check_text(policy: Policy, text: str) -> None:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if digest != policy.source_hash:
        # why: the text stored as this version must be the text the policy was read from
        raise ConfigError(
            "the rules file changed while mailhygiene was reading it; run the command again"
        )


def record_policy_version(
    store: Store, policy: Policy, text: str | None, *, actor: str, now: datetime
) -> PolicyVersionView:
    """Record the rules file ``policy`` was read from (idempotent; ``text`` may be None)."""
    if text is not None:
        _check_text(policy, text)
    with store.transaction() as session:
        version = _ensure(session, policy, text, actor=actor, now=now)
        return _view(version, governance_queries.version_in_force(session))


def _ensure(
    session: Session, policy: Policy, text: str | None, *, actor: str, now: datetime
) -> PolicyVersion:
    return governance_queries.ensure_version(
        session,
        digest=policy.source_hash,
        text=text or "",
        lock=policy.lock,
        at=now,
        by=actor,
    )


def admit_for_planning(store: Store, policy: Policy, *, actor: str, now: datetime) -> None:
    """Record the version a plan is made under; refuse it when a locked version is in
    force and this is not that version."""
    with store.transaction() as session:
        in_force = governance_queries.version_in_force(session)
        if policy.source_hash:
            _ensure(session, policy, None, actor=actor, now=now)
        if in_force is None or in_force.lock != EXTEND_ONLY:
            return
        if policy.source_hash != in_force.hash:
            # why: planning under an unadopted file would bypass the extend-only lock
            raise SafetyRefusal(
                f"the rules file (sha256 {policy.source_hash[:12] or 'none'}) is not the "
                f"adopted policy: version {in_force.id} (sha256 {in_force.hash[:12]}) is in "
                "force with an extend-only lock. Adopt this file with 'mailhygiene rules "
                "adopt' (refused if it would let any mail go sooner), or put the adopted "
                "file back"
            )


def policy_in_force(store: Store) -> PolicyVersionView | None:
    with store.transaction() as session:
        in_force = governance_queries.version_in_force(session)
        return _view(in_force, in_force) if in_force is not None else None


def _policy_of(version: PolicyVersion) -> Policy:
    if not version.text:
        raise NotFoundError(
            f"the text of policy version {version.id} was not recorded (a plan was made "
            "under it without the file at hand); it cannot be compared"
        )
    policy = parse_rules(version.text, source=f"policy version {version.id}")
    if policy.source_hash != version.hash:
        raise SafetyRefusal(
            f"policy version {version.id}'s stored text does not match its hash; "
            "the record was altered"
        )
    return policy


def adopt_policy(store: Store, policy: Policy, text: str, *, actor: str, now: datetime) -> Adoption:
    """Make the rules file ``policy`` was read from (``text``) the policy in force.

    Raises ``SafetyRefusal`` listing every weakening when the version in force carries
    the extend-only lock and ``policy`` would weaken it.
    """
    _check_text(policy, text)
    with store.transaction() as session:
        previous = governance_queries.version_in_force(session)
        version = _ensure(session, policy, text, actor=actor, now=now)
        previous_view = _view(previous, previous) if previous is not None else None
        if previous is not None and previous.id == version.id:
            return Adoption(_view(version, previous), previous_view, (), already_in_force=True)
        changes: tuple[PolicyChange, ...] = ()
        if previous is not None:
            changes = compare_policies(_policy_of(previous), policy)
            weakening = [c for c in changes if c.effect is Effect.WEAKENS]
            if previous.lock == EXTEND_ONLY and weakening:
                # why: the lock's whole point — no version may let mail go sooner
                listed = "\n".join(f"  - {change}" for change in weakening)
                raise SafetyRefusal(
                    f"refused: version {previous.id} (sha256 {previous.hash[:12]}) is in "
                    f"force with an extend-only lock, and this rules file would weaken it "
                    f"in {len(weakening)} way(s):\n{listed}\n"
                    "Only changes that keep every message at least as long can be adopted."
                )
        governance_queries.mark_adopted(session, version, at=now, by=actor)
        audit.append(
            session,
            actor=actor,
            tag=AuditTag.RULES_ADOPT,
            subject=f"policy version {version.id}",
            data={
                "hash": version.hash,
                "lock": version.lock,
                "previous": previous.hash if previous is not None else None,
                "changes": [str(change) for change in changes],
            },
            at=now,
        )
        return Adoption(_view(version, version), previous_view, changes, already_in_force=False)


def policy_history(store: Store) -> list[PolicyVersionView]:
    """Every recorded version, oldest first."""
    with store.transaction() as session:
        in_force = governance_queries.version_in_force(session)
        return [_view(v, in_force) for v in governance_queries.list_versions(session)]


def _find(session: Session, ref: str) -> PolicyVersion:
    """A version by id (``3``), hash prefix (at least 6 hex digits) or ``adopted``."""
    text = ref.strip().lower()
    if text in ("adopted", "in-force", "current"):
        in_force = governance_queries.version_in_force(session)
        if in_force is None:
            raise NotFoundError("no policy version has been adopted yet")
        return in_force
    if text.isdigit() and len(text) < 6:
        return governance_queries.version_by_id(session, int(text))
    if len(text) >= 6 and all(c in "0123456789abcdef" for c in text):
        found = governance_queries.versions_by_hash_prefix(session, text)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InputError(f"{ref!r} matches {len(found)} versions; give more of the hash")
        raise NotFoundError(f"no policy version with a hash starting {ref!r}")
    raise InputError(
        f"{ref!r} is not a version: give its number, 6+ digits of its hash, or 'adopted'"
    )


def diff_versions(store: Store, old: str, new: str | Policy) -> VersionDiff:
    """The change from version ``old`` to version ``new`` (or to a policy as loaded)."""
    with store.transaction() as session:
        in_force = governance_queries.version_in_force(session)
        old_version = _find(session, old)
        old_policy = _policy_of(old_version)
        if isinstance(new, Policy):
            recorded = governance_queries.version_by_hash(session, new.source_hash)
            new_view = _view(recorded, in_force) if recorded is not None else None
            new_policy, new_hash = new, new.source_hash
        else:
            new_version = _find(session, new)
            new_view = _view(new_version, in_force)
            new_policy, new_hash = _policy_of(new_version), new_version.hash
        return VersionDiff(
            old=_view(old_version, in_force),
            new=new_view,
            old_hash=old_version.hash,
            new_hash=new_hash,
            changes=compare_policies(old_policy, new_policy),
        )


def lock_objections(store: Store, candidate: Policy) -> tuple[PolicyChange, ...]:
    """What adopting ``candidate`` would be refused for now (empty: it would be accepted)."""
    with store.transaction() as session:
        in_force = governance_queries.version_in_force(session)
        if in_force is None or in_force.lock != EXTEND_ONLY or not in_force.text:
            return ()
        if in_force.hash == candidate.source_hash:
            return ()
        changes = compare_policies(_policy_of(in_force), candidate)
        return tuple(c for c in changes if c.effect is Effect.WEAKENS)
