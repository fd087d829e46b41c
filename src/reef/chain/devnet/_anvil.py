"""reef's contracts on anvil (Foundry's node), as ``reef up --chain anvil`` runs the network.

The embedded devnet runs on py-evm in this process; a user who outgrows it (thousands of
transactions, a chain others connect to) runs the node most Ethereum developers use locally.
:class:`AnvilChain` starts ``anvil`` as a child process with the devnet's defaults (chain id
31337, the hardhat/anvil mnemonic, 10 000 ETH per account, blocks at wall-clock time) and its
state in ``$REEF_HOME/chain/anvil-state.json`` (``--state``: loaded at start, written on exit),
deploys reef's contracts with :func:`reef.chain.deploy_contracts` on a new chain, and writes
``devnet.json`` as the devnet does, so every other command finds the chain the same way. The
deployment is kept in ``anvil.json`` beside the state.

The binary is, in order: the ``binary`` argument, ``$REEF_ANVIL``, ``anvil`` on ``PATH``, or
this checkout's ``tests/js/node_modules/.bin/anvil`` (npm ``@foundry-rs/anvil``). npm's ``anvil``
is a Node script that starts the platform's binary from a sibling package; reef runs that binary
directly (one process, not a Node process besides). On Linux anvil is told to stop
(``PR_SET_PDEATHSIG``, SIGTERM: it still writes its state) when the process that started it
dies, so a ``reef up`` killed with SIGKILL leaves no anvil holding its port.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reef.chain._deploy import Deployment
from reef.chain.devnet._accounts import (
    DEV_MNEMONIC,
    DEVNET_CHAIN_ID,
    DevAccount,
    deploy_for_dev_accounts,
    dev_accounts,
    settle_contracts,
)
from reef.chain.devnet._store import (
    ANVIL_STATE_NAME,
    INFO_NAME,
    DevnetInfo,
    DevnetLock,
    write_devnet_info,
)
from reef.errors import ChainError, ConfigError
from reef.home import ReefHome, replace_file

if TYPE_CHECKING:
    from web3 import Web3

__all__ = ["AnvilChain", "find_anvil"]

DEPLOYMENT_NAME: Final = "anvil.json"
_START_TIMEOUT_S: Final = 30.0
_STOP_TIMEOUT_S: Final = 30.0
_LISTENING = re.compile(rb"Listening on (\S+):(\d+)")
_INSTALL_HINT = (
    "install it with `npm install -g @foundry-rs/anvil` (in a reef checkout, `cd tests/js && "
    "npm install`), or point $REEF_ANVIL at an anvil binary"
)


def find_anvil(binary: str | os.PathLike[str] | None = None) -> Path:
    """The anvil binary to run (see the module docstring for the order).

    Raises:
        ConfigError: if there is none.
    """
    explicit = binary if binary is not None else os.environ.get("REEF_ANVIL")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"no anvil binary at {path}", hint=_INSTALL_HINT)
        return _native(path)
    found = shutil.which("anvil")
    if found is not None:
        return _native(Path(found))
    checkout = Path(__file__).resolve().parents[4] / "tests" / "js" / "node_modules" / ".bin"
    if (checkout / "anvil").is_file():
        return _native(checkout / "anvil")
    raise ConfigError("anvil is not installed", hint=_INSTALL_HINT)


def _native(path: Path) -> Path:
    """The platform binary behind npm's Node wrapper (``@foundry-rs/anvil/bin.mjs``, which
    spawns ``@foundry-rs/anvil-<platform>/bin/anvil``), or ``path`` itself."""
    real = path.resolve()
    if real.suffix not in (".mjs", ".js"):
        return path
    for candidate in sorted(real.parent.parent.glob("anvil-*/bin/anvil")):
        if os.access(candidate, os.X_OK):
            return candidate
    return path


def _stop_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux only).

    The C function is looked up here, before the fork, so the child only makes the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


def _read_deployment(path: Path) -> tuple[Deployment, int] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return Deployment.from_json(data["deployment"]), int(data["rate_lock_s"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a valid anvil deployment ({exc})",
            hint="start over with `reef up --chain anvil --fresh`",
        ) from exc


class AnvilChain:
    """An anvil node this process started, with reef's contracts deployed on it.

    Open one with :meth:`open`; :meth:`close` stops anvil (which then writes its state) and
    releases ``$REEF_HOME``'s devnet lock. It offers the part of :class:`Devnet`'s API the
    network needs (accounts, deployment, ``web3()``, ``record_endpoint``) and its test
    controls, over anvil's JSON-RPC.
    """

    def __init__(
        self,
        *,
        home: ReefHome,
        process: subprocess.Popen[bytes],
        url: str,
        lock: DevnetLock,
        accounts: tuple[DevAccount, ...],
    ) -> None:
        self._home = home
        self._process = process
        self._lock = lock
        self._accounts = accounts
        self._guard = threading.Lock()
        self._closed = False
        self.url = url
        """The node's JSON-RPC endpoint, ``http://host:port``."""
        self._deployment: Deployment | None = None
        self._rate_lock_s: int | None = None
        self._info = DevnetInfo(
            chain_id=DEVNET_CHAIN_ID, accounts=accounts, genesis_timestamp=0, rpc_url=url
        )

    @classmethod
    def open(
        cls,
        home: ReefHome,
        *,
        fresh: bool = False,
        rate_lock_s: int | None = None,
        host: str = "127.0.0.1",
        port: int = 8545,
        accounts: int = 10,
        binary: str | os.PathLike[str] | None = None,
        lock: DevnetLock | None = None,
    ) -> AnvilChain:
        """Start anvil on ``host:port`` (0: a free port) over the state kept in ``home``.

        A new chain (no state yet, or ``fresh``) gets reef's contracts deployed and the dev
        accounts funded with test tokens. On Linux, anvil stops when the *thread* that called
        this ends (``PR_SET_PDEATHSIG`` follows the forking thread): call it from the main
        thread or a pool thread that outlives the chain (``asyncio.to_thread`` does).

        ``lock`` is ``home``'s chain lock when the caller acquired it already (as ``reef up``
        does, before anything else starts); the chain owns it from here on (released by
        :meth:`close`, or here if opening fails).

        Raises:
            ChainError: if another devnet holds ``home``'s lock, or anvil does not start.
            ConfigError: if anvil is not installed, the kept deployment is unreadable, or
                ``rate_lock_s`` differs from the deployed market's.
        """
        try:
            executable = find_anvil(binary)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if lock is None:
            lock = DevnetLock(home)
            lock.acquire()
        directory = home.chain
        state = directory / ANVIL_STATE_NAME
        record = directory / DEPLOYMENT_NAME
        chain: AnvilChain | None = None
        process: subprocess.Popen[bytes] | None = None
        try:
            if fresh:
                for name in (ANVIL_STATE_NAME, DEPLOYMENT_NAME, INFO_NAME):
                    (directory / name).unlink(missing_ok=True)
            kept = _read_deployment(record) if state.exists() else None
            argv = [
                str(executable),
                "--host",
                host,
                "--port",
                str(port),
                "--chain-id",
                str(DEVNET_CHAIN_ID),
                "--mnemonic",
                DEV_MNEMONIC,
                "--accounts",
                str(accounts),
                "--state",
                str(state),
            ]
            process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # One C call in the child, looked up before the fork.
                preexec_fn=_stop_with_parent(),
                # The chain's lock, held until anvil exits: killed with its parent, it still
                # writes its state, and the next start must not read that file half written.
                pass_fds=(lock.fileno(),),
            )
            url = _wait_listening(process)
            chain = cls(
                home=home, process=process, url=url, lock=lock, accounts=dev_accounts(accounts)
            )
            if kept is not None:
                chain._deployment, chain._rate_lock_s = kept
            settle_contracts(
                f"anvil chain in {directory}",
                chain._rate_lock_s,
                rate_lock_s,
                deploy=chain._deploy,
                hint="drop --rate-lock, or start over with --fresh",
            )
            genesis = chain._rpc("eth_getBlockByNumber", "0x0", False)
            chain._info = replace(
                chain._info,
                genesis_timestamp=int(genesis["timestamp"], 16),
                deployment=chain._deployment,
                rate_lock_s=chain._rate_lock_s,
            )
            chain._write_info()
            return chain
        except BaseException:
            if process is not None:
                _terminate(process)
            lock.release()
            raise

    def _deploy(self, rate_lock_s: int) -> None:
        deployment = deploy_for_dev_accounts(self.web3(), self._accounts, rate_lock_s=rate_lock_s)
        self._deployment, self._rate_lock_s = deployment, rate_lock_s
        text = json.dumps({"deployment": deployment.to_json(), "rate_lock_s": rate_lock_s})
        replace_file(self._home.path("chain", DEPLOYMENT_NAME), text.encode(), durable=True)

    def _rpc(self, method: str, *params: Any) -> Any:
        import httpx

        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        try:
            answer = httpx.post(self.url, json=body, timeout=30).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ChainError(f"anvil at {self.url} did not answer {method}: {exc}") from exc
        if not isinstance(answer, Mapping) or "error" in answer:
            error = answer.get("error") if isinstance(answer, Mapping) else answer
            raise ChainError(f"anvil refused {method}: {error}")
        return answer.get("result")

    def _write_info(self) -> None:
        self._info = replace(self._info, blocks=self.block_number)
        write_devnet_info(self._home, self._info)

    # ------------------------------------------------------------------------------ metadata

    @property
    def chain_id(self) -> int:
        return DEVNET_CHAIN_ID

    @property
    def accounts(self) -> tuple[DevAccount, ...]:
        """The funded dev accounts (their keys are public: dev only)."""
        return self._accounts

    @property
    def home(self) -> ReefHome:
        return self._home

    @property
    def deployment(self) -> Deployment | None:
        return self._deployment

    @property
    def rate_lock_s(self) -> int | None:
        return self._rate_lock_s

    @property
    def block_number(self) -> int:
        return int(self._rpc("eth_blockNumber"), 16)

    def info(self) -> DevnetInfo:
        """What ``devnet.json`` says about this chain."""
        return self._info

    def web3(self) -> Web3:
        """A ``Web3`` over the node's HTTP endpoint."""
        from reef.chain._http import http_web3

        return http_web3(self.url, timeout=60)

    def record_endpoint(self, url: str | None) -> None:
        """Note in ``devnet.json`` where clients reach the chain (anvil's own URL by default)."""
        with self._guard:
            self._info = replace(self._info, rpc_url=url)
            write_devnet_info(self._home, self._info)

    def next_block_timestamp(self) -> int:
        """The timestamp the next block would get if it were mined now (anvil's pending block:
        its wall clock plus any ``evm_increaseTime``, or a pinned ``evm_setNextBlockTimestamp``).
        """
        return int(self._rpc("eth_getBlockByNumber", "pending", False)["timestamp"], 16)

    # ----------------------------------------------------------------------- test controls

    def increase_time(self, seconds: int) -> int:
        """Move the chain's clock ``seconds`` ahead (``evm_increaseTime``); return anvil's
        total offset."""
        return int(self._rpc("evm_increaseTime", seconds))

    def set_next_block_timestamp(self, timestamp: int) -> None:
        self._rpc("evm_setNextBlockTimestamp", timestamp)

    def mine(self, timestamp: int | None = None) -> None:
        """Mine one empty block (at ``timestamp`` if given)."""
        self._rpc("evm_mine", *(() if timestamp is None else (timestamp,)))

    def snapshot(self) -> int:
        return int(self._rpc("evm_snapshot"), 16)

    def revert(self, snapshot_id: int) -> bool:
        return bool(self._rpc("evm_revert", hex(snapshot_id)))

    # --------------------------------------------------------------------------------- close

    def close(self) -> None:
        """Stop anvil (it writes its state on the way out), update ``devnet.json`` with no
        endpoint, and release the lock. Safe to call more than once."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            self._info = replace(self._info, rpc_url=None)
            with contextlib.suppress(ChainError):  # anvil already gone: keep the last count
                self._info = replace(self._info, blocks=self.block_number)
            _terminate(self._process)
            write_devnet_info(self._home, self._info)
            self._lock.release()

    def __enter__(self) -> AnvilChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait_listening(process: subprocess.Popen[bytes]) -> str:
    """The URL anvil prints once it listens; its output is then drained in a thread.

    Raises:
        ChainError: if anvil exits or stays silent for too long.
    """
    assert process.stdout is not None
    stdout = process.stdout
    found: list[str] = []
    seen: list[bytes] = []
    ready = threading.Event()

    def drain() -> None:
        # Read every line until anvil exits: a full pipe would block it.
        with stdout:
            for line in stdout:
                if not ready.is_set():
                    seen.append(line)
                    match = _LISTENING.search(line)
                    if match:
                        host, port = match.group(1).decode(), match.group(2).decode()
                        found.append(f"http://{host}:{port}")
                        ready.set()
        ready.set()

    threading.Thread(target=drain, name="reef-anvil-output", daemon=True).start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            _terminate(process)
            raise ChainError(f"anvil did not start within {_START_TIMEOUT_S:g} s")
    if not found:
        code = process.wait()
        output = b"".join(seen).decode(errors="replace").strip()[-800:]
        raise ChainError(
            f"anvil exited with code {code} before listening: {output}",
            hint="is the port in use? pass another port, or 0 for a free one",
        )
    return found[0]


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # SIGTERM: anvil writes --state on the way out
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
