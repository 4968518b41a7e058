"""Settings shared by every service; each service subclasses with its own env prefix."""

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET_KEY = "kepler-development-secret-key-do-not-use-in-production"  # noqa: S105  (the public development default, not a secret)


def _shared(name: str) -> AliasChoices:
    """Shared variables keep their plain `KEPLER_` name whatever a service's own prefix is."""
    return AliasChoices(f"KEPLER_{name}")


class KeplerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEPLER_", extra="ignore", populate_by_name=True)

    env: Literal["development", "test", "production"] = Field("development", validation_alias=_shared("ENV"))
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/kepler", validation_alias=_shared("DATABASE_URL")
    )
    db_connect_timeout_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=_shared("DB_CONNECT_TIMEOUT_SECONDS"),
        description="Bound on connecting to Postgres",
    )
    db_command_timeout_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias=_shared("DB_COMMAND_TIMEOUT_SECONDS"),
        description="Bound on one statement; below the gateway's 60 s upstream timeout",
    )
    db_pool_timeout_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=_shared("DB_POOL_TIMEOUT_SECONDS"),
        description="Bound on waiting for a pooled connection",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_shared("REDIS_URL"))
    secret_key: SecretStr = Field(SecretStr(DEV_SECRET_KEY), validation_alias=_shared("SECRET_KEY"))
    log_level: str = Field("INFO", validation_alias=_shared("LOG_LEVEL"))
    log_json: bool = Field(True, validation_alias=_shared("LOG_JSON"))
    queue_name: str = Field("", validation_alias=_shared("QUEUE_NAME"))
    cors_origins: list[str] = Field(default_factory=list, validation_alias=_shared("CORS_ORIGINS"))
    sweep_interval_seconds: int = Field(
        5,
        ge=1,
        le=30,
        validation_alias=_shared("SWEEP_INTERVAL_SECONDS"),
        description="How often each worker re-enqueues work whose job was lost; bounds recovery time",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_shared("TRUSTED_PROXIES"),
        description="CIDRs (comma-separated) of proxies whose X-Forwarded-For is believed; none by default",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for network in value:
            ipaddress.ip_network(str(network).strip(), strict=False)  # a typo fails start-up, not trust
        return value

    # Queues whose worker must be beating for /readyz to answer 200 (JSON list). `make run` lists every
    # worker's, so "ready" means jobs run too; empty (the default) keeps an API's readiness its own.
    readiness_worker_queues: list[str] = Field(
        default_factory=list, validation_alias=_shared("READINESS_WORKER_QUEUES")
    )

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> "KeplerSettings":
        key = self.secret_key.get_secret_value()
        if self.env == "production" and (key == DEV_SECRET_KEY or len(key) < 32):
            raise ValueError(
                "KEPLER_SECRET_KEY must be set to a random value of 32+ characters in production"
            )
        return self
