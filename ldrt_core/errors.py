"""Typed errors. Every message says what went wrong and what the user can do about it.

No message ever contains a secret: credentials are masked before they reach an error.
"""


class LdrtError(Exception):
    """Base class of every error ldrt raises on purpose."""


class ConfigError(LdrtError):
    """A setting is missing or has a value ldrt cannot use."""


class StoreError(LdrtError):
    """The artifact store refused or failed an operation."""


class InvalidKeyError(StoreError, ValueError):
    """A store key that could escape its prefix or that a backend cannot hold."""


class ObjectNotFoundError(StoreError, KeyError):
    """No object is stored under the key."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ObjectConflictError(StoreError):
    """A key already holds different bytes and the write did not ask to overwrite them."""


class StoreUnavailableError(StoreError):
    """The store's backend cannot be reached (connection refused, DNS, timeout)."""


class DatabaseError(LdrtError):
    """The lineage database cannot be reached or is not at the expected schema."""
