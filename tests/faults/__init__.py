"""Fault injection, malformed and hostile input: the suite behind issue 8.

``world`` builds a small, fully known mailbox on the session Dovecot with an index and
a policy, and checks the safety invariants against the server after a fault;
``purge_runner`` executes a plan in a child process so a test can ``kill -9`` it;
``proxy`` is a loopback TCP proxy that drops, stalls or truncates IMAP connections.
"""
