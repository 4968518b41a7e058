"""`python -m kepler_devstack.workers PKG.tasks.WorkerSettings ...`: several services' arq workers in one
process, for `make run` only.

Each worker keeps its own queue, functions, settings and start-up; they share an event loop and the
imports (~85 MB a Python process here), which is what keeps the idle dev stack small. Production and
docker-compose run one worker process per service.
"""

import asyncio
import logging
import signal
import sys
import warnings

from kepler_kit.worker import KeplerWorker, configure_worker_logging, create_worker

log = logging.getLogger(__name__)


async def run(paths: list[str]) -> int:
    """Returns 1 when a worker ended on its own (Redis went away, say): the supervisor restarts us."""
    workers: list[KeplerWorker] = [create_worker(path, handle_signals=False) for path in paths]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failed = not stop.is_set()
    for task in tasks:  # a worker that ended on its own is a failure: stop them all, the supervisor restarts
        task.cancel()
    for worker, outcome in zip(workers, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
        if isinstance(outcome, Exception):  # logged, and the workers are still closed below
            log.error("worker of %s failed", worker.queue_name, exc_info=outcome)
    for worker in workers:  # each one closes even if another fails; a failure is shown, not swallowed
        try:
            await worker.close()
        except Exception:
            log.exception("worker of %s did not close cleanly", worker.queue_name)
    return 1 if failed else 0


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="arq")  # arq's own close()
    configure_worker_logging()
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m kepler_devstack.workers PKG.tasks.WorkerSettings [...]")
    sys.exit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
