"""The audit log: an append-only, hash-chained record of every change and refusal.

``events`` is pure (tags, entries, canonical encoding, the chain hash and its check);
``log`` is the service that appends under a lock and verifies the stored chain.
"""
