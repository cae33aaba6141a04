"""Configuration files → frozen objects; errors name the file, the key path and the fix."""

from mailhygiene.config.rules import RULES_FILE, load_rules, parse_rules

__all__ = ["RULES_FILE", "load_rules", "parse_rules"]
