"""`python -m kepler_app_service.sandbox --url URL`: registers the simulated cluster that
`KEPLER_SANDBOX=1 make run` starts (a Kubernetes contract fake), so a newcomer can deploy without a
cluster. Idempotent."""

import argparse
import asyncio
import sys

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_db import Cluster
from kepler_kit.db import create_sessionmaker
from kepler_kit.settings import KeplerSettings

SANDBOX = "sandbox"


async def register(database_url: str, url: str) -> str:
    engine = create_async_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            cluster = await session.scalar(select(Cluster).where(Cluster.name == SANDBOX))
            if cluster is None:
                cluster = Cluster(name=SANDBOX, simulated=True)
                session.add(cluster)
            cluster.api_url, cluster.simulated = url, True
        return f"cluster '{SANDBOX}' is a SIMULATED Kubernetes at {url}: nothing really runs"
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kepler_app_service.sandbox")
    parser.add_argument("--url", required=True, help="the contract fake's URL")
    args = parser.parse_args(argv)
    sys.stdout.write(asyncio.run(register(KeplerSettings().database_url, args.url)) + "\n")


if __name__ == "__main__":
    main()
