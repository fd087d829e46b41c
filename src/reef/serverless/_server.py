"""What an executor enclave runs: an :class:`ExecutorNode` on its runtime, served on two ports.

``reef executor run`` is this class and a signal handler: the CLI starts it through
:func:`reef._serve.serve_until_stopped`, as every reef server, and prints where it listens. The
pieces (runtime, node, the control and gateway servers, configuring at once) start in order and
close in the reverse order, also when a later one fails to start.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from reef._api import LightApi
from reef._serve import Server, first_stopped, serve
from reef.crypto import Secp256k1PrivateKey
from reef.errors import InputError, MisuseError
from reef.serverless._executor import ExecutorSettings
from reef.serverless._node import ExecutorNode
from reef.serverless._result import Limits
from reef.serverless._runtime import FunctionRuntime

__all__ = ["ExecutorServer"]


@dataclass
class ExecutorServer:
    """An executor node with its function runtime, serving its control app on ``control_port``
    and its gateway on ``gateway_port`` (0 picks a free port). ``await start()``, then
    :meth:`wait` (returns if a server stops by itself) and :meth:`aclose`.

    ``configure`` (with ``owner``) starts watching the chain at once, as ``POST /config``
    would; without, the operator configures it through the control app.
    """

    key: Secp256k1PrivateKey
    workerd: Path
    workdir: Path
    host: str = "127.0.0.1"
    control_port: int = 8081
    gateway_port: int = 8080
    capacity: int = 4
    limits: Limits = field(default_factory=Limits)
    configure: ExecutorSettings | None = None
    owner: str = ""
    node: ExecutorNode | None = field(default=None, init=False)
    control: Server | None = field(default=None, init=False)
    gateway: Server | None = field(default=None, init=False)
    _stack: contextlib.AsyncExitStack = field(
        default_factory=contextlib.AsyncExitStack, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.configure is not None and not self.owner:
            raise InputError(
                "configuring an executor at once needs its owner",
                hint="give owner= (the address that registers the executor) with configure=",
            )

    @property
    def address(self) -> str:
        """The enclave key's checksummed address (the executor's identity on chain)."""
        return self.key.public_key.checksum_address

    @property
    def control_url(self) -> str:
        """Where the control app listens (once started)."""
        return _started(self.control).url

    @property
    def gateway_url(self) -> str:
        """Where the gateway listens (once started)."""
        return _started(self.gateway).url

    async def start(self) -> ExecutorServer:
        """Start the runtime, the node and both servers, then configure if asked.

        Raises:
            ServiceError: a port cannot be bound.
            ServerlessError: the runtime cannot start, or configuring fails.
        """
        stack = self._stack
        try:
            runtime = await stack.enter_async_context(
                FunctionRuntime(
                    self.workerd,
                    limits=self.limits,
                    # Each job runs on every executor it selects, plus gateway calls beside.
                    max_running=self.capacity * 2 + 2,
                    workdir=self.workdir / "run",
                )
            )
            node = ExecutorNode(
                self.key,
                runtime,
                self.workdir / "code",
                limits=self.limits,
                job_capacity=self.capacity,
            )
            self.node = node
            self.control = await self._serve(
                node.control_app(), self.control_port, "executor control", "--control-port"
            )
            self.gateway = await self._serve(
                node.gateway_app(), self.gateway_port, "executor gateway", "--gateway-port"
            )
            stack.push_async_callback(node.aclose)  # closed first: stop watching the chain
            if self.configure is not None:
                await node.configure(self.configure, owner=self.owner)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def _serve(self, app: LightApi, port: int, what: str, flag: str) -> Server:
        """Serve ``app`` on ``port`` until :meth:`aclose`. A taken port's error names ``flag``,
        the option of ``reef executor run`` that picks another (its defaults, 8080 and 8081, are
        common ones: ``reef up``'s control plane is on 8080).

        Raises:
            ServiceError: the port cannot be bound.
        """
        hint = f"stop what uses port {port}, or pass {flag} PORT (0 picks a free one)"
        server = await serve(app, host=self.host, port=port, what=what, hint=hint)
        self._stack.push_async_callback(server.aclose)
        return server

    async def wait(self) -> None:
        """Return when the control or the gateway server stops by itself (at once if not
        started). Cancelling the wait stops neither."""
        await first_stopped(*(s for s in (self.control, self.gateway) if s is not None))

    async def aclose(self) -> None:
        """Stop watching the chain, both servers and the runtime, in that order."""
        await self._stack.aclose()


def _started(server: Server | None) -> Server:
    if server is None:
        raise MisuseError("the executor server has not started", hint="await start() first")
    return server
