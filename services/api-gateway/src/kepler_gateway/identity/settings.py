"""Identity settings (`KEPLER_AUTH_*`): token lifetimes, limits, and the OpenID Connect provider."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEPLER_AUTH_", extra="ignore")

    access_token_seconds: int = Field(600, ge=60, le=3600)
    identity_token_seconds: int = Field(60, ge=10, le=300, description="Gateway → service identity tokens")
    session_days: int = Field(30, ge=1, le=365, description="How long a login may be refreshed")
    login_attempts_per_account: int = Field(5, ge=1, description="Failed logins per account per window")
    login_attempts_per_ip: int = Field(30, ge=1, description="Login attempts per client IP per window")
    token_requests_per_ip: int = Field(
        60, ge=1, description="Refreshes and token creations per IP per window"
    )
    limit_window_seconds: int = Field(300, ge=10)

    oidc_issuer: str | None = Field(None, description="e.g. https://gitlab.example.com; discovery is used")
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    oidc_group_claim: str | None = Field(
        None, description="Claim listing the user's groups; app-service maps them to roles at each login"
    )
    oidc_post_login_redirect: str | None = Field(
        None, description="SPA URL to send the browser to after login, tokens in the URL fragment"
    )

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)
