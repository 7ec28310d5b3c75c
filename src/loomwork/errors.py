"""The errors loomwork raises on purpose. Each carries one message written for the person who caused it."""


class LoomworkError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero; the web API turns them into 4xx/5xx."""

    exit_code = 1


class NotFound(LoomworkError):
    """An id, model or file that does not exist."""


class InvalidInput(LoomworkError):
    """Input that was understood but is not allowed (out of range, would break the tree, ...)."""


class StoreError(LoomworkError):
    """The database cannot be opened or is not a loomwork database."""


class BackendError(LoomworkError):
    """A model backend failed: unreachable server, missing dependency, bad response."""


class Unsupported(LoomworkError):
    """A backend lacks a capability that the call needs."""
