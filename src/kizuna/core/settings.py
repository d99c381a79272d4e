"""The one configuration object: environment variables `KIZUNA_*` or a TOML file.

Defaults are safe for a single shop on a laptop (a SQLite file next to the working directory);
production sets `KIZUNA_DATABASE_URL` to PostgreSQL.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Everything Kizuna reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="KIZUNA_", toml_file="kizuna.toml", extra="ignore")

    database_url: str = "sqlite:///./kizuna.db"
    timezone: str = "Asia/Tokyo"
    idempotency_days: int = Field(default=7, ge=1)
    # Hex-encoded 32-byte keys for field encryption and blind indexes; a key file wins.
    key_file: Path | None = None
    # Development default so that `make demo` runs with nothing to configure; production sets
    # KIZUNA_SECRET_KEY (or a key file), and the derived keys are only as secret as this value.
    secret_key: str = "dev-only-change-me"  # noqa: S105
    # Field-encryption keys by version ({"1": "<hex>", "2": "<hex>"}) and the version new values
    # use (default: the highest); the blind-index key (hex; default: derived from secret_key).
    data_keys: dict[int, str] = Field(default_factory=dict)
    data_key_version: int | None = None
    index_key: str | None = None
    log_json: bool = True
    # Threads per API process that run request handlers. They hold the GIL in turn, and a thread
    # back from the database waits up to a switch interval (5 ms) for it each round trip: with 8,
    # `bench api`'s p99 at half load was 50-160 ms; with 4, 17 ms at the same peak throughput.
    api_threads: int = Field(default=4, ge=1)
    # The file the API's worker processes keep their rate-limit buckets in, so that a client's
    # limit holds across them (`kizuna serve` makes one for several workers; unset: per process).
    rate_limit_file: str | None = None
    # FastAPI's own OpenTelemetry spans and metrics, for an operator who configures an
    # OpenTelemetry SDK. Off: Kizuna's metrics and access log are its own, and the check whether
    # an SDK is configured read the environment on every request (4 % of the event loop's CPU).
    opentelemetry: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
