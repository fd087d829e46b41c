"""A stop signal lets running requests finish (up to ``stop_timeout``) instead of cancelling them.

``until_stopped`` cancels its waits when the signal comes; ``Server.wait`` awaited the uvicorn
task itself, so that cancellation tore uvicorn out of its loop and every running request was
cancelled (a traceback each, no answer). Found by ``bench/services.py`` stopping the verifier
right after ``wrk`` (17 cancelled requests per stop).
"""

from __future__ import annotations

import asyncio
import signal
import threading

import httpx
import pytest

from reef._serve import serve, until_stopped
from serve.serve_support import served_script

pytestmark = [pytest.mark.timeout(60)]

_RUN = """
import asyncio, sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from reef._serve import run

async def slow(request):
    print("running", flush=True)
    await asyncio.sleep(1.0)
    return PlainTextResponse("finished")

run(Starlette(routes=[Route("/", slow)]), host="127.0.0.1", port=0, what="slow app",
    ready=lambda server: print(server.url, flush=True))
print("stopped", flush=True)
"""


def test_a_request_running_at_sigterm_is_answered_before_the_command_exits() -> None:
    answers: list[httpx.Response | Exception] = []
    with served_script(_RUN) as (process, url):

        def call() -> None:
            try:
                answers.append(httpx.get(url, timeout=20))
            except httpx.HTTPError as exc:
                answers.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "running"
        process.send_signal(signal.SIGTERM)
        caller.join(30)
        out, err = process.communicate(timeout=30)
    assert len(answers) == 1
    answer = answers[0]
    assert isinstance(answer, httpx.Response), answer
    assert answer.text == "finished"
    assert process.returncode == 0, err
    assert "CancelledError" not in err
    assert out.strip() == "stopped"


async def test_cancelling_a_wait_does_not_stop_the_server() -> None:
    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        raise AssertionError("not called")

    async with await serve(app, host="127.0.0.1", port=0, what="test app") as server:
        waiting = asyncio.ensure_future(server.wait())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert server.running
        stop = asyncio.Event()
        stop.set()
        await until_stopped(stop, server)  # returns on the event, cancels its waits ...
        assert server.running  # ... and the server still runs until aclose
