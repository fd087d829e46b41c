"""The proof services' settings file: what ``reef up`` hands the matching engine, the prover
and the input verification service enclaves as their attested init param ``network.json``, and
what ``reef proofs engine run``, ``reef prover run`` and ``reef proofs ivs run`` read with
``--network FILE``.

One record, :class:`ServiceSettings`, has one writer (:meth:`ServiceSettings.to_json`, used by
``reef up``'s proofs extension) and one reader (:meth:`ServiceSettings.from_json`, used by the
service commands), so the format has one owner. The bytes are measured (an init param is part
of the enclave's PCR16), so :meth:`~ServiceSettings.to_json` writes exactly what the extension
always wrote: ``json.dumps(..., sort_keys=True)`` in UTF-8, and only the fields that are set.

Inside an enclave the host is not 127.0.0.1: :meth:`ServiceSettings.via_host` is the separate,
explicit step that makes the loopback URLs (the RPC, the IVSs) go through the host's address
(``$REEF_HOST_ADDR``, which the caller reads).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from reef.errors import InputError

__all__ = ["MarketJoin", "ProverSetup", "ServiceSettings"]

_LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True, kw_only=True)
class MarketJoin:
    """A market a prover joins: its price and proving-time bound (base units, seconds) and the
    compute one request uses."""

    market_id: int
    price: int
    max_time: int
    compute: int = 1


@dataclass(frozen=True, kw_only=True)
class ProverSetup:
    """How a prover registers (stake in base units, declared compute) and the markets it joins."""

    stake: int = 0
    compute: int = 1
    markets: tuple[MarketJoin, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The settings of a proof service (``network.json``); a field left ``None`` is absent from
    the file.

    Attributes:
        rpc: the chain's JSON-RPC URL.
        proof_market: the ``ProofMarket`` contract's address.
        from_block: the first block to index (the market's deployment block).
        wait_s: how long the engine waits to become the market's engine and the prover for its
            gas and stake (those come after the enclave starts).
        ignore_provers: provers the engine never assigns (an earlier network's, gone with their
            enclaves).
        ivs: each market's input verification service URL, by market id.
        prover: how the prover registers and which markets it joins.
    """

    rpc: str | None = None
    proof_market: str | None = None
    from_block: int | None = None
    wait_s: float | None = None
    ignore_provers: tuple[str, ...] | None = None
    ivs: Mapping[int, str] | None = field(default=None, hash=False)
    prover: ProverSetup | None = None

    @classmethod
    def read(cls, path: Path) -> ServiceSettings:
        """The settings in the file at ``path`` (see :meth:`from_json`).

        Raises:
            InputError: the file is unreadable, not a JSON object, or a field has the wrong type.
        """
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the network file {path}: {exc}") from exc
        return cls.from_json(data, source=str(path))

    @classmethod
    def from_json(cls, data: str | bytes, *, source: str) -> ServiceSettings:
        """The settings ``data`` (a JSON object) gives, checked; ``source`` names it in errors.

        Raises:
            InputError: ``data`` is not a JSON object, or a field has the wrong type.
        """
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise InputError(f"cannot read the network file {source}: {exc}") from exc
        if not isinstance(doc, dict):
            raise InputError(f"the network file {source} is not a JSON object")
        _check(source, doc)
        prover = doc.get("prover")
        return cls(
            rpc=doc.get("rpc"),
            proof_market=doc.get("proof_market"),
            from_block=None if doc.get("from_block") is None else int(doc["from_block"]),
            wait_s=doc.get("wait_s"),
            ignore_provers=None if "ignore_provers" not in doc else tuple(doc["ignore_provers"]),
            ivs=None if "ivs" not in doc else {int(m): u for m, u in doc["ivs"].items()},
            prover=None if prover is None else _prover(prover),
        )

    def to_json(self) -> bytes:
        """The file's bytes: the fields that are set, keys sorted, as ``reef up`` measures them."""
        doc: dict[str, Any] = {
            "rpc": self.rpc,
            "proof_market": self.proof_market,
            "from_block": self.from_block,
            "wait_s": self.wait_s,
            "ignore_provers": None if self.ignore_provers is None else list(self.ignore_provers),
            "ivs": None if self.ivs is None else {str(m): u for m, u in self.ivs.items()},
        }
        if self.prover is not None:
            p = self.prover
            doc["prover"] = {
                "stake": p.stake,
                "compute": p.compute,
                "markets": [
                    {"market_id": m.market_id, "price": m.price, "max_time": m.max_time,
                     "compute": m.compute}
                    for m in p.markets
                ],
            }  # fmt: skip
        return json.dumps({k: v for k, v in doc.items() if v is not None}, sort_keys=True).encode()

    def via_host(self, host: str | None) -> ServiceSettings:
        """These settings as seen from inside an enclave whose host is ``host``: the RPC and IVS
        URLs on 127.0.0.1 or localhost go to ``host`` (same port); others are kept. Without a
        ``host`` (not in an enclave), unchanged."""
        if not host:
            return self

        def inside(url: str) -> str:
            parts = urlsplit(url)
            if parts.hostname not in _LOOPBACK:
                return url
            return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))

        return replace(
            self,
            rpc=None if self.rpc is None else inside(self.rpc),
            ivs=None if self.ivs is None else {m: inside(u) for m, u in self.ivs.items()},
        )


def _prover(doc: Mapping[str, Any]) -> ProverSetup:
    return ProverSetup(
        stake=int(doc.get("stake", 0)),
        compute=int(doc.get("compute", 1)),
        markets=tuple(
            MarketJoin(
                market_id=int(m["market_id"]),
                price=int(m["price"]),
                max_time=int(m["max_time"]),
                compute=int(m.get("compute", 1)),
            )
            for m in doc.get("markets", [])
        ),
    )


def _check(source: str, data: Mapping[str, Any]) -> None:
    """Each field of a settings document has its type (the messages name the file and field).

    Raises:
        InputError: the first field that does not.
    """

    def bad(field: str, what: str) -> InputError:
        return InputError(f"the network file {source}: {field} must be {what}")

    for name in ("rpc", "proof_market"):
        if name in data and not isinstance(data[name], str):
            raise bad(name, "a string")
    for name in ("from_block", "wait_s"):
        if name in data and (not isinstance(data[name], int | float) or data[name] < 0):
            raise bad(name, "a number >= 0")
    ignored = data.get("ignore_provers", [])
    if not isinstance(ignored, list) or not all(isinstance(a, str) for a in ignored):
        raise bad("ignore_provers", "a list of addresses")
    ivs = data.get("ivs", {})
    if not isinstance(ivs, dict) or not all(
        isinstance(m, str) and m.isdigit() and isinstance(u, str) for m, u in ivs.items()
    ):
        raise bad("ivs", 'an object {"MARKET": URL}')
    prover = data.get("prover")
    if prover is None:
        return
    if not isinstance(prover, dict) or not isinstance(prover.get("markets", []), list):
        raise bad("prover", 'an object {"stake", "compute", "markets": [...]}')
    for item in [prover, *prover.get("markets", [])]:
        if not isinstance(item, dict):
            raise bad("prover.markets", "a list of objects")
        for key in ("stake", "compute", "market_id", "price", "max_time"):
            if key in item and (not isinstance(item[key], int) or item[key] < 0):
                raise bad(f"prover {key}", "an integer >= 0")
    for item in prover.get("markets", []):
        for key in ("market_id", "price", "max_time"):
            if key not in item:
                raise bad("each of prover.markets", f"an object with {key}")
