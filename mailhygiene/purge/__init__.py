"""Purge: plan → approve → execute → quarantine. A bug here is permanent data loss."""
