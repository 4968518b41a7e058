from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from kepler_kit.settings import KeplerSettings


class BuildServiceSettings(KeplerSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEPLER_BUILD_SERVICE_", extra="ignore", populate_by_name=True
    )

    jenkins_url: str | None = None
    jenkins_user: str | None = None
    jenkins_api_token: SecretStr | None = None
