"""Conversation threading: which messages belong to the same conversation.

Three kinds of evidence link messages, strongest first:

1. **Message-ID / References / In-Reply-To** (RFC 5322 §3.6.4), JWZ style: a message
   is in the same thread as every id it names. Ids that no message carries (a deleted
   parent, a reply whose original is in another mailbox) still connect the messages
   that name them; cycles are harmless; two copies of one message (INBOX and Archive)
   share their Message-ID and therefore their thread. A message without a Message-ID
   is a thread of its own unless something else links it.
2. **Outlook Thread-Index** (no RFC; Microsoft [MS-OXOMSG] §2.2.1.3 and the
   PidTagConversationIndex description in [MS-OXPROPS]): the base64 value starts with a
   22-byte header block identifying the conversation, and every reply appends a 5-byte
   child block. Messages whose decoded Thread-Index share the 22-byte header are one
   thread. A value that is not valid base64 or does not have that block structure is
   ignored, never an error. Every message with a valid Thread-Index joins its
   conversation, not only those without References: an Outlook reply to a Gmail message
   carries both, and a later reply that lost its References (Exchange strips them from
   internal mail) is then still found through the Thread-Index.
3. **Subject**, guarded: a *reply that lost its headers* — a message with no
   References, no In-Reply-To and no valid Thread-Index whose subject carries a reply
   or forward marker (``SV:``, ``Re:``, ``VB:`` …, see :func:`is_reply_subject`) — joins
   any message with the same :func:`normalise_subject` whose date is within
   ``subject_window`` (inclusive, default 30 days) of its own. Such a message is a
   *subject candidate*. A message without a marker starts a conversation: replies may
   join it, but it joins nothing by subject, so a recurring subject (a weekly
   newsletter, "Orderbekräftelse", the same question asked by many customers) never
   chains months of unrelated mail into one thread — a case linked to such a thread
   would keep all of it. Generic subjects (see :func:`is_generic_subject`) and messages
   without a date never link by subject. Links chain through candidates only.

**Thread ids.** Each message has a *candidate id*, :func:`thread_id_for`: its date as
``YYYYMMDDTHHMMSSZ`` (UTC) followed by a short hash of its Message-ID (or of its row key
when it has none); dateless messages get ``nodate-<hash>``, which sorts after every
dated id. A thread's id is the smallest candidate id of its messages, i.e. the id of
its oldest message. That makes the id a function of the set of messages alone — the
same across runs, input orders and batch or incremental threading — and gives the
merge rule for free: **when threads join, the lexicographically smallest id (the thread
with the oldest message) survives**. A thread id is also renamed when a message older
than all of its messages arrives (the Sent original synced after the INBOX replies);
:class:`ThreadUpdate.merges` reports both kinds, and the caller handles them the same
way (re-point rows and case links from the old id to the surviving one).

Threads only grow: removing messages (purge) never splits a thread, and an incremental
registry keeps the ids it has handed out. Rebuilding from scratch with
:func:`assign_threads` may split a thread whose linking messages are gone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import NamedTuple

__all__ = [
    "DEFAULT_SUBJECT_WINDOW",
    "GENERIC_SUBJECTS",
    "SubjectEntry",
    "ThreadInput",
    "ThreadRegistry",
    "ThreadState",
    "ThreadUpdate",
    "assign_threads",
    "is_generic_subject",
    "is_reply_subject",
    "normalise_subject",
    "subject_key",
    "thread_id_for",
    "thread_index_conversation",
]

DEFAULT_SUBJECT_WINDOW = timedelta(days=30)

_HEADER_BLOCK = 22
_CHILD_BLOCK = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Reply/forward markers seen in the wild, casefolded. Single letters (Italian "R:",
# "I:") are left out: they start real subjects too often.
_MARKERS = (
    "re",  # English, and most languages
    "sv",  # Swedish/Danish/Norwegian svar
    "vs",  # Norwegian videresendt, Finnish vastaus
    "vb",  # Swedish vidarebefordrat
    "vl",  # Finnish välitetty
    "fw",
    "fwd",
    "aw",  # German Antwort
    "wg",  # German weitergeleitet
    "antw",  # Dutch/German
    "doorst",  # Dutch doorgestuurd
    "tr",  # French transféré
    "rv",  # Spanish reenviado
    "res",  # Portuguese resposta
    "enc",  # Portuguese encaminhado
    "odp",  # Polish/Czech odpowiedź
    "pd",  # Polish przekazane dalej
    "ynt",  # Turkish yanıt
    "回复",
    "回覆",
    "答复",
    "转发",
    "轉寄",
)
# One marker, optionally counted (``Re[2]:``, ``Re(3):``), or one mailing-list tag
# (``[promix]``): letters, spaces, dots, hyphens and underscores only, so a tag carrying
# a number (``[Ticket 123]``, ``[REK-2025-0042]``) stays part of the subject.
_LEADING_NOISE = re.compile(
    r"(?:(?:" + "|".join(_MARKERS) + r")\s*(?:\[\d+\]|\(\d+\))?\s*:"
    r"|\[[^\W\d](?:[^\W\d]|[ .\-]){0,39}\])\s*"
)
_NOT_ALNUM = re.compile(r"[\W_]+")

GENERIC_SUBJECTS = frozenset(
    {
        "hej",
        "hejsan",
        "hejhej",
        "hallå",
        "hello",
        "hallo",
        "hey",
        "test",
        "testing",
        "nosubject",
        "ingetämne",
        "ingenrubrik",
        "keinbetreff",
        "ohnebetreff",
        "untitled",
        "fråga",
        "frågor",
        "question",
        "questions",
        "frage",
        "info",
        "information",
        "tack",
        "thanks",
        "thankyou",
        "danke",
        "okej",
    }
)
"""Subjects (letters and digits only, casefolded) too common to say anything."""

_MIN_SUBJECT_CHARS = 4


@dataclass(frozen=True, slots=True)
class ThreadInput:
    """What threading needs of one indexed message.

    Ids are normalised (lower-cased, without ``<>``); ``references`` is oldest first;
    ``thread_index`` is the raw Thread-Index header; ``date`` must be tz-aware.
    """

    key: int
    message_id: str
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    thread_index: str = ""
    subject: str = ""
    date: datetime | None = None

    def __post_init__(self) -> None:
        if self.date is not None and self.date.utcoffset() is None:
            raise ValueError(f"ThreadInput {self.key}: date must be tz-aware, got {self.date!r}")


class SubjectEntry(NamedTuple):
    """One dated message with a non-generic subject, as the registry remembers it."""

    date: datetime
    thread_id: str
    candidate: bool
    """True when the message may itself link by subject: a reply that names no conversation."""


@dataclass(slots=True)
class ThreadState:
    """Everything a :class:`ThreadRegistry` knows, as plain dictionaries.

    ``ids`` maps every Message-ID, In-Reply-To and References id seen (including ids of
    messages never seen) to its thread; ``conversations`` maps Thread-Index conversation
    keys (:func:`thread_index_conversation`) to threads; ``subjects`` maps a normalised
    subject to its entries; ``renamed`` maps merged-away thread ids to their successor
    (only ever filled by :meth:`ThreadRegistry.add`; state loaded from the database,
    where merges have been applied, leaves it empty).
    """

    ids: dict[str, str] = field(default_factory=dict)
    conversations: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, list[SubjectEntry]] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ThreadUpdate:
    """The result of threading a batch of new messages.

    ``merges`` holds ``(old_id, surviving_id)`` for every previously issued thread id
    that no longer names a thread, sorted; rows and case links carrying ``old_id`` must
    be re-pointed to ``surviving_id`` (already final: no chains).
    """

    assigned: dict[int, str]
    merges: tuple[tuple[str, str], ...]


def normalise_subject(subject: str) -> str:
    """Return the subject without reply/forward markers and list tags, casefolded.

    Strips any run of markers such as ``Re:``, ``SV:``, ``VB:``, ``AW:``, ``WG:``,
    ``Antw:``, ``Fwd:``, ``Re[2]:`` and leading list tags such as ``[promix]``, in any
    order (``Re: [promix] Sv: x`` → ``x``); NFKC-normalises (full-width colons, no-break
    spaces), casefolds and collapses whitespace.
    """
    text = " ".join(unicodedata.normalize("NFKC", subject).casefold().split())
    while True:
        match = _LEADING_NOISE.match(text)
        if match is None or match.end() == 0:
            return text
        text = text[match.end() :]


def is_reply_subject(subject: str) -> bool:
    """Tell whether a raw subject starts with a reply/forward marker, after any list tags.

    ``SV: Trasig leverans``, ``[promix] Re: x`` and ``Fwd: x`` are replies; ``Veckobrev
    v. 17`` and ``[REK-2025-0042] x`` are not.
    """
    text = " ".join(unicodedata.normalize("NFKC", subject).casefold().split())
    while True:
        match = _LEADING_NOISE.match(text)
        if match is None or match.end() == 0:
            return False
        if not text.startswith("["):
            return True
        text = text[match.end() :]


def is_generic_subject(normalised: str) -> bool:
    """Tell whether a normalised subject is too short or common to link messages.

    Only letters and digits count: ``(no subject)`` is ``nosubject``, ``Hej!`` is
    ``hej``. Fewer than four of them, or one of :data:`GENERIC_SUBJECTS`, is generic.
    """
    squashed = _NOT_ALNUM.sub("", normalised)
    return len(squashed) < _MIN_SUBJECT_CHARS or squashed in GENERIC_SUBJECTS


def subject_key(subject: str) -> str | None:
    """Return the normalised subject the subject rule links by, or None if generic."""
    normalised = normalise_subject(subject)
    return None if is_generic_subject(normalised) else normalised


def thread_index_conversation(thread_index: str) -> str | None:
    """Return the conversation key (hex of the 22-byte header block) of a Thread-Index.

    ``None`` for an empty value, invalid base64, or a decoded length that is not
    22 + 5·n bytes.
    """
    compact = "".join(thread_index.split())
    if not compact:
        return None
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < _HEADER_BLOCK or (len(raw) - _HEADER_BLOCK) % _CHILD_BLOCK:
        return None
    return raw[:_HEADER_BLOCK].hex()


def thread_id_for(message: ThreadInput) -> str:
    """Return the thread id a message gives a thread whose oldest message it is.

    ``YYYYMMDDTHHMMSSZ-<20 hex>`` from the UTC date (to the second) and a BLAKE2b hash
    of the Message-ID (of the row key when there is none); ``nodate-<20 hex>`` without
    a date. A thread's id is the smallest of these over its messages.
    """
    second = None if message.date is None else _second(_micros(message.date))
    return _candidate_id(message, second)


def assign_threads(
    messages: Iterable[ThreadInput], *, subject_window: timedelta = DEFAULT_SUBJECT_WINDOW
) -> dict[int, str]:
    """Thread a whole set of messages at once: map each key to its thread id.

    The result depends only on the set of messages, not on their order; see the module
    docstring for the rules. Keys must be unique.
    """
    registry = ThreadRegistry(subject_window=subject_window)
    return registry._thread(messages, remember=False).assigned


class ThreadRegistry:
    """Incremental threading over state the caller keeps (see :class:`ThreadState`).

    :meth:`add` threads new messages against everything added before — or loaded with
    :meth:`from_assigned` — and reports merged threads. Adding a set of messages in any
    number of batches gives the same ids as :func:`assign_threads` on their union.
    (Named so as not to be confused with the Outlook Thread-Index header.)
    """

    def __init__(
        self,
        state: ThreadState | None = None,
        *,
        subject_window: timedelta = DEFAULT_SUBJECT_WINDOW,
    ) -> None:
        if subject_window < timedelta(0):
            raise ValueError(f"subject_window must not be negative, got {subject_window}")
        self.state = state if state is not None else ThreadState()
        self.subject_window = subject_window

    @classmethod
    def from_assigned(
        cls,
        threaded: Iterable[tuple[ThreadInput, str]],
        *,
        subject_window: timedelta = DEFAULT_SUBJECT_WINDOW,
    ) -> ThreadRegistry:
        """Build the state from already threaded messages (e.g. rows of the index).

        The thread ids are trusted, not recomputed: they must come from this module
        with the same ``subject_window``. When one id is named by two threads (which
        consistent input never does) the smaller thread id is kept.

        Not every row needs every field. The ids and Thread-Index of *all* threaded
        messages are needed (subject and date may be left blank), but subject and date
        only of messages dated within ``subject_window`` of the earliest and latest new
        message: the subject rule never reaches further. A message may be passed twice
        (once as ids only, once in full).
        """
        state = ThreadState()
        cache: dict[str, str | None] = {}

        def remember(table: dict[str, str], token: str, thread_id: str) -> None:
            known = table.get(token)
            if known is None or thread_id < known:
                table[token] = thread_id

        for message, thread_id in threaded:
            for token in _tokens(message):
                remember(state.ids, token, thread_id)
            conversation = thread_index_conversation(message.thread_index)
            if conversation is not None:
                remember(state.conversations, conversation, thread_id)
            subject = _subject_key(message.subject, cache)
            if subject is not None and message.date is not None:
                candidate = (
                    conversation is None
                    and not _names_others(message)
                    and is_reply_subject(message.subject)
                )
                state.subjects.setdefault(subject, []).append(
                    SubjectEntry(message.date, thread_id, candidate)
                )
        return cls(state, subject_window=subject_window)

    def resolve(self, thread_id: str) -> str:
        """Return the id that ``thread_id`` is known by now (after any merges)."""
        renamed = self.state.renamed
        current = thread_id
        while current in renamed:
            current = renamed[current]
        while thread_id != current:  # path compression
            following = renamed[thread_id]
            renamed[thread_id] = current
            thread_id = following
        return current

    def add(self, messages: Iterable[ThreadInput]) -> ThreadUpdate:
        """Thread new messages; return their thread ids and the merges they caused."""
        return self._thread(messages, remember=True)

    def _thread(self, messages: Iterable[ThreadInput], *, remember: bool) -> ThreadUpdate:
        # Hot path (100k messages well under a second): union-find over list indices.
        # Nodes 0..n-1 are the new messages; an id or conversation is represented by
        # the first message naming it; existing threads get nodes after them.
        batch = list(messages)
        count = len(batch)
        if len({message.key for message in batch}) != count:
            raise ValueError("duplicate keys in one batch of messages to thread")
        parent = list(range(count))

        def find(node: int) -> int:
            while (up := parent[node]) != node:
                parent[node] = node = parent[up]
            return node

        def union(left: int, right: int) -> None:
            left, right = find(left), find(right)
            if left != right:
                parent[right] = left

        first_named: dict[str, int] = {}
        first_in_conversation: dict[str, int] = {}
        subject_cache: dict[str, str | None] = {}
        reply_cache: dict[str, bool] = {}
        subjects: list[str | None] = [None] * count
        candidates = [False] * count
        micros = [0] * count  # meaningful where seconds[node] is not None
        seconds: list[int | None] = [None] * count
        setdefault_named = first_named.setdefault
        for node, message in enumerate(batch):
            references = message.references
            for token in (message.message_id, message.in_reply_to, *references):
                if token and (other := setdefault_named(token, node)) != node:
                    union(other, node)
            conversation = (
                thread_index_conversation(message.thread_index) if message.thread_index else None
            )
            if conversation is not None:
                other = first_in_conversation.setdefault(conversation, node)
                if other != node:
                    union(other, node)
            candidates[node] = (
                conversation is None
                and not message.in_reply_to
                and not any(references)
                and _is_reply(message.subject, reply_cache)
            )
            if (date := message.date) is not None:
                micros[node] = when = (date - _EPOCH) // _MICROSECOND
                whole = when // 1_000_000
                seconds[node] = whole if _FIRST_SECOND <= whole <= _LAST_SECOND else _second(when)
                subject = message.subject
                subjects[node] = (
                    subject_cache[subject]
                    if subject in subject_cache
                    else _subject_key(subject, subject_cache)
                )

        thread_nodes: dict[str, int] = {}

        def thread_node(thread_id: str) -> int:
            thread_id = self.resolve(thread_id)
            node = thread_nodes.get(thread_id)
            if node is None:
                node = thread_nodes[thread_id] = len(parent)
                parent.append(node)
            return node

        for table, firsts in (
            (self.state.ids, first_named),
            (self.state.conversations, first_in_conversation),
        ):
            if table:
                for token, node in firsts.items():
                    known = table.get(token)
                    if known is not None:
                        union(node, thread_node(known))

        self._link_subjects(subjects, micros, candidates, find, union, thread_node)

        # A thread's id is the smallest candidate id of its messages; an existing thread
        # contributes its current id, which already is that minimum over its messages.
        # Candidate ids order by (second, hash), so only the earliest second is hashed.
        roots = [find(node) for node in range(count)]
        earliest: dict[int, int] = {}
        for root, second in zip(roots, seconds, strict=True):
            if second is not None and (root not in earliest or second < earliest[root]):
                earliest[root] = second
        best: dict[int, str] = {}
        for node, (root, second) in enumerate(zip(roots, seconds, strict=True)):
            if second == earliest.get(root):
                candidate_id = _candidate_id(batch[node], second)
                if root not in best or candidate_id < best[root]:
                    best[root] = candidate_id
        for thread_id, node in thread_nodes.items():
            root = find(node)
            if root not in best or thread_id < best[root]:
                best[root] = thread_id

        merges = {}
        for thread_id, node in thread_nodes.items():
            surviving = best[find(node)]
            if surviving != thread_id:
                merges[thread_id] = surviving
        assigned = {message.key: best[root] for message, root in zip(batch, roots, strict=True)}
        if remember:
            self.state.renamed.update(merges)
            self._remember(batch, subjects, candidates, assigned)
        return ThreadUpdate(assigned, tuple(sorted(merges.items())))

    def _link_subjects(
        self,
        subjects: Sequence[str | None],
        micros: Sequence[int],
        candidates: Sequence[bool],
        find: Callable[[int], int],
        union: Callable[[int, int], None],
        thread_node: Callable[[str], int],
    ) -> None:
        """Apply the subject rule to every pair involving at least one new message.

        Within one subject, sorted by date, a candidate links to every entry within the
        window: a contiguous range. Linking each range as a path of neighbours gives the
        same partition as linking every pair, in O(n log n) instead of O(n²).
        """
        window = self.subject_window // _MICROSECOND
        fresh: dict[str, list[int]] = {}
        for node, subject in enumerate(subjects):
            if subject is not None:
                fresh.setdefault(subject, []).append(node)
        known = self.state.subjects
        for subject, nodes in fresh.items():
            old = known.get(subject)
            if not old:
                # Cheap exits for the common cases: a lone message, or replies that
                # References already put in one thread.
                if len(nodes) < 2 or not any(candidates[node] for node in nodes):
                    continue
                root = find(nodes[0])
                if all(find(node) == root for node in nodes):
                    continue
            entries = [(micros[node], node, candidates[node], True) for node in nodes]
            if old:
                entries.extend(
                    (_micros(entry.date), thread_node(entry.thread_id), entry.candidate, False)
                    for entry in old
                )
            entries.sort()
            instants = [entry[0] for entry in entries]
            new_before = [0, *accumulate(int(entry[3]) for entry in entries)]
            ranges: list[tuple[int, int]] = []
            for when, _node, candidate, _is_new in entries:
                if candidate:
                    low = bisect_left(instants, when - window)
                    high = bisect_right(instants, when + window)
                    if new_before[high] > new_before[low]:  # pairs among old entries are done
                        ranges.append((low, high))
            ranges.sort()
            reach = -1
            for low, high in ranges:
                for index in range(max(low, reach - 1), high - 1):
                    union(entries[index][1], entries[index + 1][1])
                reach = max(reach, high)

    def _remember(
        self,
        batch: Sequence[ThreadInput],
        subjects: Sequence[str | None],
        candidates: Sequence[bool],
        assigned: Mapping[int, str],
    ) -> None:
        state = self.state
        for message, subject, candidate in zip(batch, subjects, candidates, strict=True):
            thread_id = assigned[message.key]
            for token in _tokens(message):
                state.ids[token] = thread_id
            conversation = thread_index_conversation(message.thread_index)
            if conversation is not None:
                state.conversations[conversation] = thread_id
            if subject is not None and message.date is not None:
                state.subjects.setdefault(subject, []).append(
                    SubjectEntry(message.date, thread_id, candidate)
                )


def _tokens(message: ThreadInput) -> tuple[str, ...]:
    """The ids a message carries or names, without empties."""
    named = (message.message_id, message.in_reply_to, *message.references)
    return tuple(token for token in dict.fromkeys(named) if token)


def _names_others(message: ThreadInput) -> bool:
    return bool(message.in_reply_to) or any(message.references)


def _subject_key(subject: str, cache: dict[str, str | None]) -> str | None:
    """The normalised subject, or None when it is generic; memoised per raw subject."""
    try:
        return cache[subject]
    except KeyError:
        cache[subject] = key = subject_key(subject)
        return key


def _is_reply(subject: str, cache: dict[str, bool]) -> bool:
    """:func:`is_reply_subject`, memoised per raw subject."""
    try:
        return cache[subject]
    except KeyError:
        cache[subject] = reply = is_reply_subject(subject)
        return reply


def _candidate_id(message: ThreadInput, second: int | None) -> str:
    identity = "m" + message.message_id if message.message_id else "k" + str(message.key)
    data = identity.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=10).hexdigest()
    if second is None:
        return f"nodate-{digest}"
    utc = _EPOCH + timedelta(seconds=second)
    return (
        f"{utc.year:04d}{utc.month:02d}{utc.day:02d}"
        f"T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}Z-{digest}"
    )


def _micros(date: datetime) -> int:
    """Exact microseconds since the epoch; unlike ``timestamp()`` no float rounding."""
    return (date - _EPOCH) // _MICROSECOND


def _second(micros: int) -> int:
    """Whole UTC seconds, clamped to what ``datetime`` can show (a day at either end)."""
    return min(max(micros // 1_000_000, _FIRST_SECOND), _LAST_SECOND)


_FIRST_SECOND = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)
_LAST_SECOND = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)
