"""IMAP adapter: the only package that speaks IMAP."""
