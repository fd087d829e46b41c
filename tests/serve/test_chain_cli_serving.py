"""`reef chain` as a process on the serving floor: CORS for loopback and --cors-origin only,
the --call-timeout budget, and SIGTERM stopping it cleanly (exit 0)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REEF = Path(sys.executable).with_name("reef")


def test_reef_chain_cors_call_timeout_and_sigterm(reef_home: Path) -> None:
    process = subprocess.Popen(
        [
            str(REEF),
            "chain",
            "--port",
            "0",
            "--cors-origin",
            "https://my.dapp",
            "--call-timeout",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "REEF_HOME": str(reef_home), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            found = re.match(r"endpoint\s+(http://\S+)", line)
            if found:
                url = found.group(1)
            if line.strip() == "ready":
                break
        assert url, "reef chain printed no endpoint"
        request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
        for origin, allowed in (
            ("https://my.dapp", True),
            ("http://localhost:3000", True),
            ("https://evil.example", False),
        ):
            answer = httpx.post(url, json=request, headers={"Origin": origin}, timeout=10)
            assert ("access-control-allow-origin" in answer.headers) is allowed, origin
        looping = httpx.post(
            url,
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "eth_call",
                "params": [{"data": "0x5b600056"}, "latest"],
            },
            timeout=60,
        ).json()
        assert looping["error"]["message"] == "execution aborted (timeout = 0.5s)"
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "devnet stopped" in rest
        assert "Traceback" not in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
