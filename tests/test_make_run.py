"""``make run`` for real: the supervisor starts everything, the README's walk-through works against
it exactly as written (only the port differs), and Ctrl-C stops every process."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from devtools.server_process import free_port
from devtools.stack import check_ports
from shared.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration


def walkthrough() -> str:
    """The README's first ```sh block after the "Walk-through" heading."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Walk-through") :]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_make_run_serves_the_readme_walkthrough_and_stops_on_ctrl_c(tmp_path):
    api_port, flower_port = free_port(), free_port()
    env = {
        **os.environ,
        "MLQUEUE_API_PORT": str(api_port),
        "MLQUEUE_FLOWER_PORT": str(flower_port),
        "MLQUEUE_RUN_DIR": str(tmp_path / "run"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MLQUEUE_REDIS_URL", None)
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - read after the process ends
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.stack"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while "mlqueue is ready" not in (tmp_path / "run.log").read_text():
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "make run did not become ready"
            time.sleep(0.5)
        banner = (tmp_path / "run.log").read_text()
        assert "AUTHENTICATION IS OFF" in banner and "whsec_" in banner
        assert "HTTP Request:" not in banner  # the readiness polls are not echoed to the terminal

        script = "set -euo pipefail\n" + walkthrough().replace("localhost:8000", f"127.0.0.1:{api_port}")
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "HTTP/1.1 202" in out and "location: /v1/jobs/" in out.lower()
        assert '"status":"succeeded"' in out  # the Prefer: wait answer
        assert '"label":"versicolor"' in out or '"label":"virginica"' in out
        assert '"latest_version":1' in out

        flower = httpx.get(f"http://127.0.0.1:{flower_port}/", timeout=5)
        assert flower.status_code == 401  # Flower is behind basic auth
    finally:
        os.killpg(proc.pid, signal.SIGINT) if proc.poll() is None else None
        code = proc.wait(60)
        log.close()
    assert code == 0
    assert "stopped" in (tmp_path / "run.log").read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2)


def test_a_taken_port_is_named_with_the_setting_that_moves_it():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = Settings(api_host="127.0.0.1", api_port=free_port(), flower_port=port)
        with pytest.raises(RuntimeError, match=rf"port {port} \(MLQUEUE_FLOWER_PORT\)"):
            check_ports(settings)
    check_ports(settings)  # released: nothing to say
