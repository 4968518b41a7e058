"""`<data dir>/stack.json`: how commands run beside `make run` (`make admin`) find its servers."""

import json
import stat
from pathlib import Path

from kepler_devstack.config import StackConfig
from kepler_devstack.stack import backing_servers


async def test_the_running_stack_records_its_urls_and_removes_them_on_exit(tmp_path: Path) -> None:
    """Without it `kepler-admin` guessed 127.0.0.1:5432 and reached another PostgreSQL."""
    database, redis = "postgresql+asyncpg://kepler:s3cret@db.internal:5433/kepler", "redis://cache:6380/0"
    config = StackConfig(tmp_path, tmp_path / "data", 8000, database, redis)
    state = tmp_path / "data" / "stack.json"

    async with backing_servers(config):
        recorded = json.loads(state.read_text())
        mode = stat.S_IMODE(state.stat().st_mode)

    assert recorded["database_url"] == database
    assert recorded["redis_url"] == redis
    assert mode == 0o600  # the URL may carry a password
    assert not state.exists()
