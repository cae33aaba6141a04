"""Development and test tooling: a throwaway Dovecot and synthetic mailboxes.

Standard library only; nothing in the product imports this package.
"""

from mailhygiene.devtools.dovecot import (
    DEFAULT_USER,
    ImapAccount,
    ThrowawayDovecot,
    default_capabilities,
    dovecot_binary,
    folder_dirname,
    imap_utf7_encode,
)

__all__ = [
    "DEFAULT_USER",
    "ImapAccount",
    "ThrowawayDovecot",
    "default_capabilities",
    "dovecot_binary",
    "folder_dirname",
    "imap_utf7_encode",
]
