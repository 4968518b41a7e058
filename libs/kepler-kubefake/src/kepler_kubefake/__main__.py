"""`python -m kepler_kubefake --port 0 --ready-delay 2`: run the fake until SIGINT/SIGTERM.

The first line on stdout is the server URL, so a supervisor (the sandbox) can read where it listens.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from kepler_kubefake.server import KubeFake


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kepler_kubefake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--ready-delay",
        type=float,
        default=None,
        help="real seconds a container takes to start (default: 2 Kubernetes seconds, scaled)",
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help="real seconds per Kubernetes second")
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument(
        "--anonymous", action="store_true", help="with --token: no token is system:anonymous, not a 401"
    )
    parser.add_argument(
        "--watch-window", type=float, default=75.0, help="Kubernetes seconds of watch history (0: unbounded)"
    )
    parser.add_argument(
        "--namespace-delete-delay",
        type=float,
        default=5.0,
        help="Kubernetes seconds a deleted namespace stays Terminating",
    )
    parser.add_argument("--gone-mode", choices=("event", "http"), default="event", help="how a 410 is sent")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="also write a kubeconfig here")
    parser.add_argument(
        "--state-file", type=Path, default=None, help="keep the objects in this JSON file across restarts"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with KubeFake.start(
        host=args.host,
        port=args.port,
        ready_delay=args.ready_delay,
        time_scale=args.time_scale,
        token=args.token,
        anonymous=args.anonymous,
        watch_window=args.watch_window or None,
        namespace_delete_delay=args.namespace_delete_delay,
        gone_mode=args.gone_mode,
        state_file=args.state_file,
    ) as fake:
        if args.kubeconfig:
            fake.write_kubeconfig(args.kubeconfig)
        sys.stdout.write(fake.url + "\n")
        sys.stdout.flush()
        logging.getLogger("kepler_kubefake").info("simulated Kubernetes API server listening on %s", fake.url)
        await stop.wait()


class JsonFormatter(logging.Formatter):
    """Kepler's JSON line keys (timestamp, level, logger, event), for `KEPLER_LOG_JSON=true`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    handler.setFormatter(JsonFormatter() if json_lines else text)
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def main(argv: list[str] | None = None) -> None:
    configure_logging(os.environ.get("KEPLER_LOG_JSON", "").lower() in ("1", "true", "yes", "on"))
    asyncio.run(serve(_arguments(argv)))


if __name__ == "__main__":
    main()
