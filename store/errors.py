"""The store's exception tree, grouped by what the caller does."""


class StoreError(Exception):
    """Base of everything the store raises on purpose."""


class StorageUnavailable(StoreError):
    """The database cannot be reached or is locked: retry later (receiver answers 503)."""


class NotFound(StoreError):
    """The named record does not exist (admin answers 404)."""


class Conflict(StoreError):
    """A unique constraint refused the write (e.g. a merchant slug already taken)."""
