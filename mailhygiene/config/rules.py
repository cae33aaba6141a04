"""Load and validate ``rules.toml`` into a frozen ``Policy``.

Everything is checked here, once: unknown keys (with the closest known key suggested),
types, durations, anchors, regular expressions, the time zone, limits and duplicate rule
names. Every problem is a ``ConfigError`` that names the file and the key path, e.g.
``rules.toml: rules[2].match.sender: expected a string or list of strings, got 12``;
rule indexes count from 0 in file order. No raw ``dict`` leaves this module.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from pathlib import Path

from mailhygiene.errors import ConfigError
from mailhygiene.policy import (
    EXTEND_ONLY,
    MATCHERS,
    Anchor,
    Duration,
    Matcher,
    Policy,
    PurgeAction,
    RetentionRule,
    is_imap_keyword,
    load_zone,
)
from mailhygiene.policy.durations import DURATION_HINT
from mailhygiene.policy.rules import show

__all__ = ["RULES_FILE", "load_rules", "parse_rules", "read_rules_text"]

RULES_FILE = "rules.toml"
SCHEMA_VERSION = 1

_TOP = ("version", "timezone", "retention", "cases", "purge", "policy", "rules")
_RETENTION = ("default",)
_CASES = ("pattern", "auto_create", "keyword", "keep_after_close")
_PURGE = ("action", "quarantine_folder", "quarantine_grace", "auto_approve_limit", "plan_ttl")
_POLICY = ("lock", "tombstone_keep")
_LOCKS = {"none": "", EXTEND_ONLY: EXTEND_ONLY}
_RULE = ("name", "description", "source", "keep", "anchor", "match")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_RULE_NAME = re.compile(r"\w[\w.-]{0,63}")
_DEFAULTS = Policy()


def load_rules(path: Path) -> Policy:
    """Read and validate the rules file at ``path``; ``ConfigError`` says what is wrong."""
    raw, text = _read(path)
    return _parse(text, source=str(path), digest=hashlib.sha256(raw).hexdigest())


def read_rules_text(path: Path) -> str:
    """The rules file's text, as ``load_rules`` reads it (to record it as a policy version).

    ``parse_rules(read_rules_text(path), ...)`` has the same ``source_hash`` as
    ``load_rules(path)`` when the file did not change in between.
    """
    return _read(path)[1]


def _read(path: Path) -> tuple[bytes, str]:
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no such file; create it by copying the documented {RULES_FILE} from the "
            "mailhygiene source tree and adapting it to your policy",
            path=where,
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"is a directory, expected a {RULES_FILE} file", path=where) from None
    except OSError as error:
        raise ConfigError(f"cannot read the file: {error.strerror or error}", path=where) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"not UTF-8 text (bad byte at offset {error.start}); save the file as UTF-8",
            path=where,
        ) from None
    return raw, text


def parse_rules(text: str, *, source: str) -> Policy:
    """Validate rules-file ``text``; ``source`` names it in errors (usually the path)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _parse(text, source=source, digest=digest)


def _parse(text: str, *, source: str, digest: str) -> Policy:
    try:
        document = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"invalid TOML: {error}", path=source) from None
    except RecursionError:
        raise ConfigError("invalid TOML: arrays or tables nested too deeply", path=source) from None
    return _Reader(source).policy(document, digest)


class _Reader:
    """Walks the parsed document; every check raises ``ConfigError`` with the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.source, key=key or None)

    # -- the document --------------------------------------------------------------------

    def policy(self, document: dict[str, object], digest: str) -> Policy:
        self.known_keys(document, _TOP, "")
        if "version" in document:
            version = self.integer(document, "version", "")
            if version != SCHEMA_VERSION:
                raise self.error(
                    "version", f"unsupported version {version}; this mailhygiene reads version 1"
                )
        retention = self.section(document, "retention", _RETENTION, required=True)
        cases = self.section(document, "cases", _CASES)
        purge = self.section(document, "purge", _PURGE)
        governance = self.section(document, "policy", _POLICY)
        try:
            return Policy(
                timezone=self.timezone(document),
                default_keep=self.duration(retention, "default", "retention", required=True),
                rules=self.rules(document),
                case_keep_after_close=self.duration(
                    cases, "keep_after_close", "cases", _DEFAULTS.case_keep_after_close
                ),
                case_pattern=self.case_pattern(cases),
                case_auto_create=self.boolean(
                    cases, "auto_create", "cases", _DEFAULTS.case_auto_create
                ),
                case_keyword=self.case_keyword(cases),
                purge_action=self.purge_action(purge),
                quarantine_folder=self.quarantine_folder(purge),
                quarantine_grace=self.duration(
                    purge, "quarantine_grace", "purge", _DEFAULTS.quarantine_grace
                ),
                auto_approve_limit=self.limit(purge),
                plan_ttl=self.duration(purge, "plan_ttl", "purge", _DEFAULTS.plan_ttl),
                lock=self.lock(governance),
                tombstone_keep=self.duration(
                    governance, "tombstone_keep", "policy", _DEFAULTS.tombstone_keep
                ),
                source_hash=digest,
            )
        except ValueError as error:  # Policy's own checks; the ones above should come first
            raise self.error("", str(error)) from None

    def timezone(self, document: dict[str, object]) -> str:
        name = self.string(document, "timezone", "", _DEFAULTS.timezone)
        try:
            load_zone(name)
        except ValueError as error:
            raise self.error("timezone", str(error)) from None
        return name

    def case_pattern(self, cases: dict[str, object]) -> str:
        pattern = self.string(cases, "pattern", "cases", _DEFAULTS.case_pattern)
        key = "cases.pattern"
        try:
            regex = re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as error:
            raise self.error(key, f"invalid regular expression {pattern!r}: {error}") from None
        if regex.search("") is not None:
            # It would find a "case number" in every message and open cases for all mail.
            raise self.error(key, f"regular expression {pattern!r} matches empty text")
        return pattern

    def case_keyword(self, cases: dict[str, object]) -> str:
        keyword = self.string(cases, "keyword", "cases", _DEFAULTS.case_keyword)
        if keyword.startswith("\\") or not is_imap_keyword(keyword):
            raise self.error(
                "cases.keyword",
                f"{keyword!r} is not a valid IMAP keyword: use ASCII letters, digits and $, "
                "no spaces or ()%*\"\\], e.g. '$Reklamation'",
            )
        return keyword

    def purge_action(self, purge: dict[str, object]) -> PurgeAction:
        value = self.string(purge, "action", "purge", _DEFAULTS.purge_action.value)
        return PurgeAction(self.choice(value, [a.value for a in PurgeAction], "purge.action"))

    def quarantine_folder(self, purge: dict[str, object]) -> str:
        folder = self.string(purge, "quarantine_folder", "purge", _DEFAULTS.quarantine_folder)
        key = "purge.quarantine_folder"
        if not folder.strip() or any(c in folder for c in "*%") or not folder.isprintable():
            raise self.error(
                key, f"expected a folder name without * or % or control characters, got {folder!r}"
            )
        if folder.strip().upper() == "INBOX":
            raise self.error(key, "the quarantine cannot be INBOX; use a folder of its own")
        return folder

    def lock(self, governance: dict[str, object]) -> str:
        value = self.string(governance, "lock", "policy", "none")
        return _LOCKS[self.choice(value, list(_LOCKS), "policy.lock")]

    def limit(self, purge: dict[str, object]) -> int:
        if "auto_approve_limit" not in purge:
            return _DEFAULTS.auto_approve_limit
        limit = self.integer(purge, "auto_approve_limit", "purge")
        if limit < 0:
            raise self.error(
                "purge.auto_approve_limit",
                f"must be 0 or more (0 = never auto-approve), got {limit}",
            )
        return limit

    # -- rules ---------------------------------------------------------------------------

    def rules(self, document: dict[str, object]) -> tuple[RetentionRule, ...]:
        value = document.get("rules", [])
        if not isinstance(value, list):
            raise self.error("rules", f"expected [[rules]] tables, got {show(value)}")
        rules: list[RetentionRule] = []
        first_use: dict[str, str] = {}
        for index, item in enumerate(value):
            key = f"rules[{index}]"
            if not isinstance(item, dict):
                raise self.error(key, f"expected a [[rules]] table, got {show(item)}")
            rule = self.rule(item, key)
            if rule.name in first_use:
                raise self.error(
                    f"{key}.name",
                    f"duplicate rule name {rule.name!r} (already used by {first_use[rule.name]})",
                )
            first_use[rule.name] = key
            rules.append(rule)
        return tuple(rules)

    def rule(self, table: dict[str, object], key: str) -> RetentionRule:
        self.known_keys(table, _RULE, key)
        name = self.string(table, "name", key, required=True)
        if not _RULE_NAME.fullmatch(name):
            raise self.error(
                f"{key}.name",
                f"expected a short name of letters, digits, '-', '_' or '.', got {name!r}",
            )
        anchor = self.string(table, "anchor", key, Anchor.RECEIVED.value)
        return RetentionRule(
            name=name,
            keep=self.duration(table, "keep", key, required=True),
            anchor=Anchor(self.choice(anchor, [a.value for a in Anchor], f"{key}.anchor")),
            matchers=self.matchers(table, f"{key}.match"),
            description=self.string(table, "description", key, ""),
            source=self.string(table, "source", key, ""),
        )

    def matchers(self, rule: dict[str, object], key: str) -> tuple[Matcher, ...]:
        if "match" not in rule:
            raise self.error(
                key,
                f"missing; a rule needs at least one condition ({', '.join(MATCHERS)})",
            )
        table = rule["match"]
        if not isinstance(table, dict) or not table:
            raise self.error(
                key,
                f"expected a table with at least one of {', '.join(MATCHERS)}, got {show(table)}",
            )
        self.known_keys(table, tuple(MATCHERS), key)
        matchers: list[Matcher] = []
        for kind, value in table.items():
            try:
                matchers.append(MATCHERS[kind].from_config(value))
            except ValueError as error:
                subkey = getattr(error, "subkey", "")
                message = getattr(error, "message", str(error))
                raise self.error(f"{self.join(key, kind)}{subkey}", message) from None
        return tuple(matchers)

    # -- scalar readers ------------------------------------------------------------------

    def section(
        self, document: dict[str, object], name: str, known: tuple[str, ...], required: bool = False
    ) -> dict[str, object]:
        if name not in document:
            if required:
                raise self.error(name, f"missing section [{name}]")
            return {}
        table = document[name]
        if not isinstance(table, dict):
            raise self.error(name, f"expected a [{name}] table, got {show(table)}")
        self.known_keys(table, known, name)
        return table

    def known_keys(self, table: dict[str, object], known: tuple[str, ...], where: str) -> None:
        for name in table:
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            raise self.error(self.join(where, name), f"unknown key {name!r}; {hint}")

    def string(
        self,
        table: dict[str, object],
        name: str,
        where: str,
        default: str | None = None,
        *,
        required: bool = False,
    ) -> str:
        key = self.join(where, name)
        if name not in table:
            if required or default is None:
                raise self.error(key, "missing; this key is required")
            return default
        value = table[name]
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {show(value)}")
        if required and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def boolean(self, table: dict[str, object], name: str, where: str, default: bool) -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.error(self.join(where, name), f"expected true or false, got {show(value)}")
        return value

    def integer(self, table: dict[str, object], name: str, where: str) -> int:
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(self.join(where, name), f"expected a whole number, got {show(value)}")
        return value

    def duration(
        self,
        table: dict[str, object],
        name: str,
        where: str,
        default: Duration | None = None,
        *,
        required: bool = False,
    ) -> Duration:
        key = self.join(where, name)
        if name not in table:
            if required or default is None:
                raise self.error(key, f"missing; {DURATION_HINT}")
            return default
        value = table[name]
        if not isinstance(value, str):
            raise self.error(key, f"{DURATION_HINT}, got {show(value)}")
        try:
            duration = Duration.parse(value)
        except ValueError as error:
            raise self.error(key, str(error)) from None
        if duration.amount == 0:
            # A zero period would purge (or finally delete) mail the moment it is seen.
            raise self.error(key, f"must be longer than zero, got {value!r}")
        return duration

    def choice(self, value: str, allowed: list[str], key: str) -> str:
        if value in allowed:
            return value
        close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise self.error(key, f"expected one of {', '.join(allowed)}, got {value!r}{hint}")

    @staticmethod
    def join(where: str, name: str) -> str:
        shown = name if _BARE_KEY.fullmatch(name) else f'"{name}"'
        return f"{where}.{shown}" if where else shown
