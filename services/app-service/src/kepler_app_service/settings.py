from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kepler_kit.settings import KeplerSettings


class AppServiceSettings(KeplerSettings):
    model_config = SettingsConfigDict(env_prefix="KEPLER_APP_SERVICE_", extra="ignore", populate_by_name=True)
    idp_group_roles: dict[str, str] = Field(
        default_factory=dict,
        description='IdP group → "namespace:role", e.g. {"devs": "payments:developer"}; applied at login',
    )
    default_cluster: str | None = Field(
        None, description="Cluster for namespaces bound to none (the sandbox sets it)"
    )
    crash_loop_restarts: int = Field(3, ge=1, description="Restarts of a new pod that fail its rollout early")
    rollout_stable_seconds: float = Field(
        10.0,
        ge=0,
        le=600,
        description="After a rollout completes, its new pods must run this long without a restart before "
        "the deployment succeeds (a container without a readinessProbe is Ready as soon as it starts)",
    )
    # An interrupted deployment resumes within deploy_stale_seconds + sweep_interval_seconds (12 + 5 s).
    # A running deployment heartbeats at least once per watch window, so the window must stay well
    # below the staleness or a live rollout would be taken for a dead one.
    deploy_stale_seconds: float = Field(
        12.0, gt=0, description="A running deployment silent this long is picked up again by the sweeper"
    )
    watch_timeout_seconds: int = Field(
        5,
        ge=1,
        le=300,
        description="Each watch request's server-side timeout (a deployment heartbeats after each)",
    )
    dora_refresh_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How often /metrics' delivery metrics (DORA's four keys) are recomputed; 0: never",
    )
