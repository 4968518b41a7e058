from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kepler_kit.settings import KeplerSettings


class AppServiceSettings(KeplerSettings):
    model_config = SettingsConfigDict(env_prefix="KEPLER_APP_SERVICE_", extra="ignore", populate_by_name=True)
    idp_group_roles: dict[str, str] = Field(
        default_factory=dict,
        description='IdP group → "namespace:role", e.g. {"devs": "payments:developer"}; applied at login',
    )
