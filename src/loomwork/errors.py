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


class Conflict(LoomworkError):
    """The request was valid but lost a race: what it acts on changed since the caller looked (HTTP 409)."""


class Busy(StoreError):
    """The database stayed locked by other writers for longer than loomwork waits (HTTP 503)."""


class Transient(StoreError):
    """A PostgreSQL serialization failure or deadlock: the transaction is safe to run again, and is."""


class Corrupt(StoreError):
    """The stored rows break an invariant (a cycle, a missing parent): `loomwork check` lists them."""


class Cancelled(LoomworkError):
    """Work that nobody wants any more (the page moved on, the reader left): stopped between its pieces."""


class Forbidden(LoomworkError):
    """The caller's account may not do this (its role on the tree or queue is too low): HTTP 403."""
