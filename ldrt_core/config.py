"""Configuration: one settings object, read from `LDRT_*` environment variables.

Build it once at the entry point with `load_settings()` and pass it down; nothing in ldrt reads
the environment anywhere else. Embedded defaults need no services: everything lives under
`LDRT_HOME` (a SQLite database and a local folder store).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ldrt_core.errors import ConfigError

ENV_PREFIX = "LDRT_"

# Open-access papers on LDRT. Bulk-search syntax: | is OR, quotes make phrases.
DEFAULT_QUERY = (
    '"low-dose radiation therapy" | "low dose radiation therapy" | "low-dose radiotherapy" | '
    '"low dose radiotherapy" | "low-dose irradiation" | "low dose irradiation" | LDRT'
)

# S3 bucket naming rules (AWS, also enforced by MinIO): 3-63 chars, lowercase, digits, dot, hyphen.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class Settings(BaseSettings):
    """Every knob of ldrt. Each field maps to `LDRT_<FIELD>`; secrets are `SecretStr`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, frozen=True
    )

    home: Path = Field(
        default=Path(".ldrt"),
        description="Folder for embedded data: the SQLite database and the local store.",
    )
    db_url: str = Field(
        default="",
        description="SQLAlchemy URL of the lineage database; default SQLite at $LDRT_HOME/ldrt.db.",
    )
    store_url: str = Field(
        default="",
        description="file:///path or s3://bucket[/prefix]; default file://$LDRT_HOME/store.",
    )
    s3_endpoint: str = Field(
        default="s3.amazonaws.com",
        description="S3 endpoint as host[:port] or http(s)://host[:port] (MinIO: minio:9000).",
    )
    s3_access_key: SecretStr | None = Field(default=None, description="S3 access key.")
    s3_secret_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    s3_secure: bool | None = Field(
        default=None,
        description="Use TLS for S3; default from the endpoint's scheme, else true.",
    )
    s3_region: str | None = Field(default=None, description="S3 region, if the server needs one.")
    s3_public_endpoint: str | None = Field(
        default=None,
        description="Where browsers reach the S3 server, when not at LDRT_S3_ENDPOINT (compose: "
        "http://localhost:9000): report links are signed for it.",
    )

    # ---- corpus refresh
    s2_api_url: str = Field(
        default="https://api.semanticscholar.org",
        description="Semantic Scholar API root (the Graph API lives under /graph/v1).",
    )
    s2_api_key: SecretStr | None = Field(
        default=None, description="Semantic Scholar API key (x-api-key); optional but rate-limited."
    )
    s2_requests_per_second: float = Field(
        default=1.0, gt=0, description="Most Semantic Scholar requests per second (keyed limit: 1)."
    )
    s2_max_wait_s: float = Field(
        default=300.0,
        ge=0,
        description="Most seconds of backoff on 429/5xx/bad responses before a refresh gives up.",
    )
    s2_backoff_s: float = Field(
        default=2.0, gt=0, description="First backoff after a failed API call; doubles each time."
    )
    s2_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one API request.")
    refresh_query: str = Field(
        default=DEFAULT_QUERY, description="Semantic Scholar bulk-search query for the corpus."
    )
    refresh_overlap_days: int = Field(
        default=90,
        ge=0,
        description="Each refresh searches from the cursor minus this many days (indexing lag).",
    )
    download_allow_hosts: str = Field(
        default="",
        description="Comma-separated hosts that may resolve to private or loopback addresses.",
    )
    download_max_bytes: int = Field(
        default=50_000_000, gt=0, description="Largest PDF to download, in bytes."
    )
    download_connect_timeout_s: float = Field(default=10.0, gt=0, description="Connect timeout.")
    download_read_timeout_s: float = Field(default=60.0, gt=0, description="Read timeout.")
    download_retries: int = Field(
        default=3, ge=0, description="Retries of a download after a transient failure."
    )
    download_backoff_s: float = Field(
        default=1.0, ge=0, description="First wait before retrying a download; doubles each time."
    )
    download_workers: int = Field(default=4, ge=1, description="Parallel PDF downloads.")

    # ---- LLM backends (QA generation, answering, judging)
    llm_backend: str = Field(
        default="template", description="QA generation backend: template, openai, hf or vllm."
    )
    llm_base_url: str = Field(
        default="http://localhost:8000/v1",
        description="OpenAI-compatible endpoint (what `vllm serve` exposes).",
    )
    llm_model: str = Field(default="", description="Model name at the endpoint, or a local dir.")
    llm_api_key: SecretStr | None = Field(default=None, description="Key for the endpoint.")
    llm_concurrency: int = Field(default=8, ge=1, description="Requests in flight at once.")
    llm_timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one request.")
    llm_max_retries: int = Field(default=4, ge=0, description="Retries on 429/5xx/timeouts.")
    llm_backoff_s: float = Field(default=1.0, ge=0, description="First retry wait; doubles.")
    llm_max_invalid_retries: int = Field(
        default=2, ge=0, description="Re-asks after an answer that is not valid JSON."
    )

    # ---- extraction
    extract_dpi: int = Field(default=150, ge=36, le=600, description="Figure rendering DPI.")
    extract_workers: int = Field(
        default=2, ge=1, description="Worker processes extracting PDFs in parallel."
    )
    extract_timeout_s: float = Field(
        default=120.0, gt=0, description="Most seconds one PDF may take; then it is stopped."
    )
    extract_memory_mb: int = Field(
        default=1024, ge=128, description="Most memory (MB) one extraction worker may use."
    )
    extract_max_pages: int = Field(default=300, ge=1, description="Longer PDFs are refused.")
    extract_max_page_points: float = Field(
        default=14_400.0, gt=0, description="Larger pages (in points) are refused."
    )
    extract_max_image_pixels: int = Field(
        default=150_000_000, ge=1, description="Larger embedded images are refused (bombs)."
    )
    marker_models: str | None = Field(
        default=None, description="Local folder of Marker weights; enables the Marker backend."
    )

    # ---- training
    base_model: str = Field(
        default="tiny-random",
        description="LLaVA to fine-tune: a local llava-hf directory, or tiny-random (CPU demo).",
    )
    train_deepspeed: str | None = Field(
        default=None, description="DeepSpeed JSON config for training (zero3, zero2 or a path)."
    )
    train_checkpoint_every: int = Field(
        default=200, ge=0, description="Optimizer steps between checkpoints (0: none)."
    )

    # ---- orchestration
    task_runner: str = Field(
        default="threads",
        description=(
            "Where per-item tasks run: threads[:N], dask[:N] (a local Dask cluster of N "
            "worker processes) or dask:tcp://HOST:PORT (a running Dask scheduler); read when "
            "the flows are imported."
        ),
    )

    progress_every_s: float = Field(
        default=2.0,
        ge=0,
        description=(
            "Progress bars in the Prefect UI: a bar shows once its work has run this long, and "
            "updates at most this often; shorter work shows no bar (0: every update at once)."
        ),
    )

    # ---- evaluation
    judges: str = Field(
        default="",
        description="LLM judges, comma-separated MODEL[@BASE_URL] (OpenAI-compatible) or hf:DIR.",
    )

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "expected an SQLAlchemy database URL such as "
                "postgresql://user:password@host:5432/ldrt or sqlite:///path/ldrt.db"
            ) from None
        # psycopg 3 is the driver we install; a bare postgresql:// would ask for psycopg2.
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        elif url.get_backend_name() not in ("postgresql", "sqlite"):
            raise ValueError(f"expected a postgresql:// or sqlite:// URL, got {url.drivername}://")
        return url.render_as_string(hide_password=False)

    @field_validator("s2_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s):// URL such as https://api.semanticscholar.org")
        return value.rstrip("/")

    @field_validator("download_allow_hosts")
    @classmethod
    def _check_hosts(cls, value: str) -> str:
        hosts = [h.strip().lower() for h in value.split(",") if h.strip()]
        bad = [h for h in hosts if "/" in h or " " in h]
        if bad:
            raise ValueError(f"expected comma-separated host names, got {bad[0]!r}")
        return ",".join(hosts)

    @field_validator("task_runner")
    @classmethod
    def _check_task_runner(cls, value: str) -> str:
        parse_task_runner(value)
        return value

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme == "file":
            if not parts.path:
                raise ValueError("expected file:///absolute/path or file://relative/path")
        elif parts.scheme == "s3":
            if not _BUCKET_RE.match(parts.netloc):
                raise ValueError(
                    f"expected s3://bucket[/prefix] with a valid bucket name (3-63 characters: "
                    f"lowercase letters, digits, '.', '-'), "
                    f"got bucket {_without_userinfo(parts.netloc)!r}"
                )
        else:
            raise ValueError(f"expected a file:// or s3:// URL, got {parts.scheme or 'no'} scheme")
        return value

    @field_validator("s3_endpoint", "s3_public_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value if "://" in value else f"//{value}")
        shown = _without_userinfo(parts.netloc) or value.split("@")[-1]
        if parts.scheme not in ("", "http", "https") or not parts.hostname:
            raise ValueError(f"expected host[:port] or http(s)://host[:port], got {shown!r}")
        if parts.username or parts.password:
            raise ValueError(
                "expected no credentials in the endpoint: use LDRT_S3_ACCESS_KEY/SECRET_KEY"
            )
        if parts.path not in ("", "/"):
            raise ValueError(f"expected no path in the endpoint, got {shown!r} with a path")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"expected a numeric port, got {shown!r}") from None
        return value

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        # Derived defaults, set on the frozen model the one time it is built.
        if not self.db_url:
            object.__setattr__(self, "db_url", f"sqlite:///{self.home / 'ldrt.db'}")
        if not self.store_url:
            object.__setattr__(self, "store_url", (self.home / "store").absolute().as_uri())
        if self.s3_secure is None:
            object.__setattr__(self, "s3_secure", _tls(self.s3_endpoint))
        return self

    def __repr_args__(self) -> Any:
        # repr() ends up in logs and tracebacks: never with the database password.
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "db_url" else value

    # ------------------------------------------------------------------ derived views

    @property
    def store_is_s3(self) -> bool:
        return self.store_url.startswith("s3://")

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(h for h in self.download_allow_hosts.split(",") if h)

    @property
    def s3_host(self) -> str:
        """The endpoint as host[:port], the form the minio SDK takes."""
        return _host(self.s3_endpoint)

    @property
    def s3_public_host(self) -> tuple[str, bool] | None:
        """LDRT_S3_PUBLIC_ENDPOINT as (host[:port], TLS), if set: TLS unless it says http://."""
        if not self.s3_public_endpoint:
            return None
        return _host(self.s3_public_endpoint), _tls(self.s3_public_endpoint)

    def redacted(self) -> dict[str, str]:
        """The effective configuration as `LDRT_*` names and printable values, secrets masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value: Any = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "********"
            elif value is None:
                shown = "(unset)"
            elif name == "db_url":
                shown = mask_url(str(value))
            else:
                shown = str(value)
            out[f"{ENV_PREFIX}{name.upper()}"] = shown
        return out

    def secrets(self) -> list[str]:
        """Every secret value in this configuration, for scrubbing text before it is shown."""
        keys = (self.s3_access_key, self.s3_secret_key, self.s2_api_key, self.llm_api_key)
        found = [s.get_secret_value() for s in keys if s]
        password = make_url(self.db_url).password
        if password:
            found.append(str(password))
        return [s for s in found if s]

    def scrub(self, text: str) -> str:
        """`text` with every secret of this configuration replaced by ********."""
        for secret in self.secrets():
            text = text.replace(secret, "********")
        return text


def _without_userinfo(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def _tls(endpoint: str) -> bool:
    """TLS unless the endpoint says http://: https, or no scheme at all."""
    return not endpoint.startswith("http://")


def _host(endpoint: str) -> str:
    """host[:port] of an endpoint given as host[:port] or http(s)://host[:port]."""
    return urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").netloc


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable URL)"


TASK_RUNNER_CHOICES = "threads, threads:N, dask, dask:N or dask:tcp://HOST:PORT"


def parse_task_runner(spec: str) -> tuple[str, int | None, str | None]:
    """LDRT_TASK_RUNNER as (kind, workers, scheduler address); ValueError if malformed."""
    kind, _, argument = spec.partition(":")
    workers = int(argument) if argument.isdigit() and int(argument) > 0 else None
    if kind == "threads" and (not argument or workers):
        return kind, workers, None
    if kind == "dask" and (not argument or workers):
        return kind, workers, None
    if kind == "dask" and re.fullmatch(r"[a-z]+://\S+", argument):
        return kind, None, argument
    raise ValueError(f"{spec!r}: use {TASK_RUNNER_CHOICES}")


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from the process environment (or `env`), with explicit overrides.

    Raises ConfigError naming each bad variable and what it expects.
    """
    try:
        if env is None:
            return Settings(**overrides)
        values: dict[str, Any] = {
            name[len(ENV_PREFIX) :].lower(): value
            for name, value in env.items()
            if name.startswith(ENV_PREFIX)
            and name[len(ENV_PREFIX) :].lower() in Settings.model_fields
        }
        values.update(overrides)
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "?"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "bool_parsing":
            message = "expected true or false (also 1/0, yes/no, on/off)"
        lines.append(f"  {ENV_PREFIX}{field.upper()}: {message}")
    return "\n".join(lines)
