"""The sandbox's simulated cluster logs like the rest of `make run`: JSON when KEPLER_LOG_JSON is on."""

import json
import os
import signal
import subprocess
import sys


def test_json_lines_when_kepler_log_json_is_on() -> None:
    """It printed `asctime name level message` text whatever the setting."""
    env = {**os.environ, "KEPLER_LOG_JSON": "true"}
    argv = [sys.executable, "-m", "kepler_kubefake", "--port", "0"]
    fake = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        assert fake.stderr is not None
        url = fake.stdout.readline().strip()
        line = fake.stderr.readline()
    finally:
        fake.send_signal(signal.SIGTERM)
        fake.communicate(timeout=10)

    record = json.loads(line)
    assert record["event"] == f"simulated Kubernetes API server listening on {url}"
    assert (record["logger"], record["level"]) == ("kepler_kubefake", "info")
