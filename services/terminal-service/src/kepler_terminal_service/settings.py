from pydantic_settings import SettingsConfigDict

from kepler_kit.settings import KeplerSettings


class TerminalServiceSettings(KeplerSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEPLER_TERMINAL_SERVICE_", extra="ignore", populate_by_name=True
    )

    session_idle_timeout_s: int = 900
