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


class DatabaseUnavailableError(DatabaseError):
    """The lineage database refused a connection or dropped one mid-work (down, restarting,
    unreachable); what was committed before stays, and the work can be run again."""


class SourceError(LdrtError):
    """A paper source (Semantic Scholar, a folder) failed in a way retrying now will not fix."""


class SourceAuthError(SourceError):
    """The API refused our credentials."""


class SourceUnavailableError(SourceError):
    """The API kept failing (429, 5xx, bad JSON, network) until the retry budget ran out."""


class DownloadError(LdrtError):
    """A PDF could not be fetched. `transient` says whether trying again later may work."""

    transient = False


class RefusedURLError(DownloadError):
    """The URL's scheme or address is not allowed (non-http(s), private or loopback)."""


class NotAPDFError(DownloadError):
    """The bytes are not a PDF (an HTML landing page, say) or the PDF is cut short."""


class TooLargeError(DownloadError):
    """The file is over the size cap (LDRT_DOWNLOAD_MAX_BYTES)."""


class TransientDownloadError(DownloadError):
    """Network error, timeout, 429 or 5xx: worth retrying."""

    transient = True


class TruncatedPDFError(TransientDownloadError):
    """The PDF ends without %%EOF: the transfer was cut short."""


class ExtractionError(LdrtError):
    """A PDF could not be turned into figures and text; the message says why."""


class EncryptedPDFError(ExtractionError):
    """The PDF needs a password."""


class CorruptPDFError(ExtractionError):
    """The PDF cannot be parsed (damaged, truncated, not a PDF at all)."""


class EmptyPDFError(ExtractionError):
    """The PDF has no pages."""


class TooManyPagesError(ExtractionError):
    """More pages than LDRT_EXTRACT_MAX_PAGES."""


class PageSizeError(ExtractionError):
    """A page is absurdly large or has no area."""


class ImageOnlyPDFError(ExtractionError):
    """No text layer (a scan): captions cannot be read without OCR."""


class ImageBombError(ExtractionError):
    """An embedded image declares more pixels than LDRT_EXTRACT_MAX_IMAGE_PIXELS."""


class ExtractionTimeoutError(ExtractionError):
    """The document took longer than the per-document time limit."""


class ExtractionMemoryError(ExtractionError):
    """The document needed more memory than the per-document limit."""


class ExtractionCrashedError(ExtractionError):
    """The worker process died while extracting (a parser crash)."""


class TrainingError(LdrtError):
    """Training cannot start or go on: no usable samples, a bad config, a checkpoint mismatch."""


class TrainingDataError(TrainingError):
    """The dataset version gave no usable training sample (each skip is counted with a reason)."""


class CheckpointMismatchError(TrainingError):
    """The checkpoint was made over other training samples than the run has now."""
