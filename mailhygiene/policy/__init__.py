"""The retention policy core: pure types and ``decide``; imports nothing else of ours.

``decide(facts, policy, now) -> Verdict`` is the only judgement; ``config`` builds the
``Policy`` from ``rules.toml`` and the callers pass ``now``.
"""

from mailhygiene.policy.decide import RetentionVerdict, decide, retention_verdict
from mailhygiene.policy.durations import Duration, DurationUnit
from mailhygiene.policy.model import (
    EXTEND_ONLY,
    LOCK_MODES,
    Action,
    Anchor,
    CaseLink,
    Matcher,
    MessageFacts,
    Policy,
    PurgeAction,
    Reason,
    ReasonKind,
    RetentionRule,
    Verdict,
    load_zone,
)
from mailhygiene.policy.rules import (
    HEADER_NAMES,
    MATCHERS,
    FolderMatcher,
    HeaderMatcher,
    HeaderTest,
    KeywordMatcher,
    MatcherBase,
    MatcherValueError,
    RecipientMatcher,
    SenderMatcher,
    SubjectMatcher,
    is_imap_keyword,
)

__all__ = [
    "EXTEND_ONLY",
    "HEADER_NAMES",
    "LOCK_MODES",
    "MATCHERS",
    "Action",
    "Anchor",
    "CaseLink",
    "Duration",
    "DurationUnit",
    "FolderMatcher",
    "HeaderMatcher",
    "HeaderTest",
    "KeywordMatcher",
    "Matcher",
    "MatcherBase",
    "MatcherValueError",
    "MessageFacts",
    "Policy",
    "PurgeAction",
    "Reason",
    "ReasonKind",
    "RecipientMatcher",
    "RetentionRule",
    "RetentionVerdict",
    "SenderMatcher",
    "SubjectMatcher",
    "Verdict",
    "decide",
    "is_imap_keyword",
    "load_zone",
    "retention_verdict",
]
