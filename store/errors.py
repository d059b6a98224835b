"""The store's exceptions."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class RunNotFoundError(StoreError):
    """No run has this id."""


class SchemaError(StoreError):
    """The database's schema is not one this version can use (newer, or a failed migration)."""


class ImportFormatError(StoreError):
    """A file to import is neither minicon's JSONL export nor an strace log."""
