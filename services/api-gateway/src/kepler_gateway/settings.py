"""Gateway settings (`KEPLER_GATEWAY_*`): where the upstreams are and how patient to be with them."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kepler_kit.contracts import Service
from kepler_kit.settings import KeplerSettings


class GatewaySettings(KeplerSettings):
    """Upstream URLs are plain `http://host:port[/prefix]`: the services sit on loopback or inside
    the cluster network, and the hot-path client speaks HTTP/1.1 without TLS (start-up refuses https)."""

    model_config = SettingsConfigDict(env_prefix="KEPLER_GATEWAY_", extra="ignore", populate_by_name=True)

    app_service_url: str = "http://127.0.0.1:8001"
    build_service_url: str = "http://127.0.0.1:8002"
    alert_service_url: str = "http://127.0.0.1:8003"
    terminal_service_url: str = "http://127.0.0.1:8004"

    connect_timeout: float = Field(2.0, gt=0, description="Opening a new TCP connection to an upstream")
    response_timeout: float = Field(
        60.0,
        gt=0,
        description="Until the upstream's response headers arrive (504 after). The body has no read timeout,"
        " so SSE and log-follow streams may stay idle as long as the upstream keeps them open.",
    )
    pool_limit: int = Field(
        512, ge=1, description="Concurrent upstream connections per service (beyond it, requests queue)"
    )
    keepalive_timeout: float = Field(
        4.0, gt=0, description="Idle pooled connections are closed before uvicorn's own 5 s keep-alive does"
    )
    check_timeout: float = Field(2.0, gt=0, description="Upstream health, readiness and OpenAPI fetches")
    openapi_cache_seconds: float = Field(15.0, ge=0, description="How long a merged /openapi.json is reused")
    metrics_public: bool = Field(
        False, description="Serve /metrics on the public port too (off: it would tell anyone the traffic)"
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="An internal listener serving only /metrics (for Prometheus)"
    )
    metrics_host: str = Field("127.0.0.1", description="Where the internal metrics listener binds")
    max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest request body (413 beyond it), WebSockets excepted"
    )
    webhook_max_body_bytes: int = Field(
        25 * 1024 * 1024, ge=1, description="Largest body on /api/v1/webhooks/* (GitHub sends up to 25 MB)"
    )

    def upstream_urls(self) -> dict[Service, str]:
        return {
            Service.APP: self.app_service_url.rstrip("/"),
            Service.BUILD: self.build_service_url.rstrip("/"),
            Service.ALERT: self.alert_service_url.rstrip("/"),
            Service.TERMINAL: self.terminal_service_url.rstrip("/"),
        }
