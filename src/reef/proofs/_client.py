"""Typed client for ``ProofMarket.vy`` on reef.chain's client base.

Reads are ``eth_call``; writes simulate, sign, send and wait (reef.chain's transactor) and
return a :class:`~reef.chain.TxResult` whose events are this contract's typed events. A revert
raises :class:`~reef.errors.ContractRevertError` whose ``reason`` is one of
:class:`~reef.proofs.ProofRevert`. Events are read as every client's
(:meth:`~reef.chain.ContractClient.events`, ``events_of``, ``events_to_head`` for a follower
such as the prover or the IVS; ``TxResult.first``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from web3 import Web3

from reef.chain import (
    Address,
    Amount,
    ChainEvent,
    ContractClient,
    ProgressCallback,
    Sender,
    TxResult,
    check_uint,
    parse_address,
)
from reef.encoding import parse_bytes32
from reef.errors import InputError, ProofError
from reef.proofs._events import (
    AskCreated,
    AskSecret,
    AuctionCreated,
    MarketCreated,
    ProofMarketEvent,
    SecretAssigned,
    proof_market_decoder,
)
from reef.proofs._groth16 import Groth16Proof
from reef.proofs._types import Ask, AskState, Market, MarketKind, Offer, ProverInfo

__all__ = ["ProofMarketClient"]

_ZERO = "0x" + "00" * 20
_IMAGE_ID = "an image id is 32 bytes, sha256 over the PCRs: `reef image measure` prints it"
_E = TypeVar("_E", bound=ChainEvent)


def _uints(values: Sequence[int], name: str) -> list[int]:
    """``values`` as the contract's ``uint256[]``, each checked by :func:`~reef.chain.check_uint`
    (which refuses what is not an int, rather than converting it)."""
    return [check_uint(v, name) for v in values]


class ProofMarketClient(ContractClient[ProofMarketEvent]):
    """The proof market: markets, asks, provers, assignment, proofs and slashing."""

    CONTRACT = "ProofMarket"
    EVENTS = proof_market_decoder
    PAID_IN = "token"
    FOUND_AT = "--proof-market; `reef up` writes it to network.json as services.proofs.market"

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        account: Sender,
        *,
        token: str,
        matching_engine: str,
        progress: ProgressCallback | None = None,
    ) -> ProofMarketClient:
        """Deploy a market paid (and staked) in ``token``, assigned by ``matching_engine``."""
        return cls._deploy(
            w3,
            account,
            parse_address(token, name="token"),
            parse_address(matching_engine, name="matching engine"),
            progress=progress,
        )

    # ---- views ----

    def matching_engine(self) -> Address:
        return self._call_address("matchingEngine")

    def market_count(self) -> int:
        """How many markets were created.

        Raises:
            ChainError: the address holds another contract.
        """
        return int(self._read_as_self("marketCount"))

    def ask_count(self) -> int:
        """How many asks were created.

        Raises:
            ChainError: the address holds another contract.
        """
        return int(self._read_as_self("askCount"))

    def market(self, market_id: int) -> Market:
        """The market ``market_id``.

        Raises:
            ProofError: there is none.
            ChainError: the address holds another contract.
        """
        r = self._read_as_self("markets", check_uint(market_id, "market id"))
        if int(r[0]) == 0:
            raise ProofError(
                f"market {market_id} does not exist",
                hint="list the markets with `reef proofs market list`",
            )
        return Market(
            market_id=market_id,
            kind=MarketKind(int(r[0])),
            creator=parse_address(r[1]),
            verifier=parse_address(r[2]),
            image_id=bytes(r[3]),
            artifacts_hash=bytes(r[4]),
            penalty=Amount(int(r[5])),
            ivs=parse_address(r[6]),
            n_public=int(r[7]),
            n_inputs=int(r[8]),
            private_inputs=bool(r[9]),
        )

    def retired(self, market_id: int) -> bool:
        """Whether market ``market_id``'s creator retired it (it takes no new asks); False for
        a market that does not exist."""
        return bool(self._call("retired", check_uint(market_id, "market id")))

    def ask(self, ask_id: int) -> Ask:
        """The ask ``ask_id`` with its current (derived) state. Raises ProofError if unknown."""
        r = self._call("asks", check_uint(ask_id, "ask id"))
        if int(r[8]) == 0:
            raise ProofError(
                f"ask {ask_id} does not exist", hint="list asks with `reef proofs list`"
            )
        return Ask(
            ask_id=ask_id,
            market_id=int(r[0]),
            requester=parse_address(r[1]),
            refund_address=parse_address(r[2]),
            reward=Amount(int(r[3])),
            expiry=int(r[4]),
            proving_time=int(r[5]),
            deadline=int(r[6]),
            prover=parse_address(r[7]),
            state=self.ask_state(ask_id),
            has_secret=bool(r[9]),
        )

    def ask_state(self, ask_id: int) -> AskState:
        return AskState(int(self._call("askState", check_uint(ask_id, "ask id"))))

    def inputs(self, ask_id: int) -> tuple[int, ...]:
        return tuple(int(v) for v in self._call("inputs", check_uint(ask_id, "ask id")))

    def prover(self, address: str) -> ProverInfo:
        who = parse_address(address, name="prover")
        r = self._call("provers", who)
        return ProverInfo(
            address=who,
            reward_address=parse_address(r[0]),
            stake=Amount(int(r[1])),
            stake_locked=Amount(int(r[2])),
            compute=int(r[3]),
            compute_allocated=int(r[4]),
            compute_used=int(r[5]),
            markets=int(r[6]),
        )

    def offer(self, prover: str, market_id: int) -> Offer:
        r = self._call(
            "offers", parse_address(prover, name="prover"), check_uint(market_id, "market id")
        )
        return Offer(
            joined=bool(r[0]),
            price=Amount(int(r[1])),
            max_time=int(r[2]),
            compute=int(r[3]),
            active=int(r[4]),
            leave_at=int(r[5]),
        )

    def engine_key(self) -> bytes:
        """The matching engine's published public key (64 bytes; empty until it publishes)."""
        return bytes(self._call("engineKey"))

    def prover_key(self, prover: str, market_id: int) -> bytes:
        """The key ``prover`` registered for ``market_id``'s private inputs (empty if none)."""
        return bytes(
            self._call(
                "proverKeys",
                parse_address(prover, name="prover"),
                check_uint(market_id, "market id"),
            )
        )

    def ask_secret(self, ask_id: int, from_block: int = 0) -> AskSecret:
        """The ask's encrypted private inputs as logged at creation.

        Raises:
            ProofError: the ask has no private inputs.
        """
        found = self._ask_event(AskSecret, ask_id, from_block)
        if found is None:
            raise ProofError(f"ask {ask_id} has no private inputs")
        return found

    def assigned_acl(self, ask_id: int, from_block: int = 0) -> SecretAssigned:
        """The ACL the engine made for the assigned prover at assignment.

        Raises:
            ProofError: the ask has no private inputs or is not assigned.
        """
        found = self._ask_event(SecretAssigned, ask_id, from_block)
        if found is None:
            raise ProofError(f"ask {ask_id} was not assigned with private inputs")
        return found

    def auction_price(self, ask_id: int) -> Amount:
        """An auction ask's price at the latest block (raises ContractRevertError otherwise)."""
        return Amount(int(self._call("auctionPrice", check_uint(ask_id, "ask id"))))

    def auction(self, ask_id: int, from_block: int = 0) -> AuctionCreated | None:
        """An auction ask's terms as logged at creation; None for other asks."""
        return self._ask_event(AuctionCreated, ask_id, from_block)

    def ask_price(self, ask_id: int) -> Amount:
        """What a proof of the assigned ask pays its prover (0 before assignment)."""
        return Amount(int(self._call("askPrice", check_uint(ask_id, "ask id"))))

    def invalid_input_digest(self, ask_id: int) -> bytes:
        """What the market's IVS signs (EIP-191) to close ``ask_id`` as invalid input."""
        return bytes(self._call("invalidInputDigest", check_uint(ask_id, "ask id")))

    def tee_digest(self, ask_id: int, output: Sequence[int]) -> bytes:
        """What a TEE market's enclave key signs (EIP-191) as the proof of ``output``."""
        return bytes(
            self._call("teeDigest", check_uint(ask_id, "ask id"), _uints(output, "output"))
        )

    # ---- markets ----

    def create_groth16_market(
        self,
        *,
        verifier: str,
        artifacts_hash: bytes,
        penalty: int,
        n_inputs: int,
        ivs: str | None = None,
        metadata: str = "",
        private_inputs: bool = False,
    ) -> tuple[int, TxResult[ProofMarketEvent]]:
        """Create a Groth16 market over a deployed verifier; returns (market id, result).
        With ``private_inputs`` its asks carry encrypted private inputs."""
        digest = parse_bytes32(
            artifacts_hash,
            name="the artifacts hash",
            hint="it is MarketMetadata.artifacts_hash(): SHA-256 over the artifacts' file hashes",
        )
        return self._create_market(
            "createGroth16Market",
            [parse_address(verifier, name="verifier"), digest],
            (penalty, n_inputs, ivs, metadata, private_inputs),
        )

    def create_tee_market(
        self,
        *,
        image_id: bytes,
        penalty: int,
        n_inputs: int,
        ivs: str | None = None,
        metadata: str = "",
        private_inputs: bool = False,
    ) -> tuple[int, TxResult[ProofMarketEvent]]:
        """Create a market whose proofs are signatures of enclaves running ``image_id``."""
        return self._create_market(
            "createTeeMarket",
            [parse_bytes32(image_id, name="image id", hint=_IMAGE_ID)],
            (penalty, n_inputs, ivs, metadata, private_inputs),
        )

    def _create_market(
        self,
        function: str,
        proof_system: Sequence[Any],
        terms: tuple[int, int, str | None, str, bool],
    ) -> tuple[int, TxResult[ProofMarketEvent]]:
        """Send ``function(*proof_system, <the terms every market has>)``; (market id, result).

        ``terms`` are the arguments of the public methods: penalty, n_inputs, ivs, metadata and
        private_inputs."""
        penalty, n_inputs, ivs, metadata, private_inputs = terms
        result = self._transact(
            function,
            *proof_system,
            check_uint(penalty, "penalty"),
            parse_address(ivs or _ZERO, name="ivs"),
            check_uint(n_inputs, "n_inputs"),
            metadata,
            private_inputs,
        )
        return result.first(MarketCreated).market_id, result

    def set_tee_signer(
        self, market_id: int, signer: str, allowed: bool = True
    ) -> TxResult[ProofMarketEvent]:
        return self._transact(
            "setTeeSigner", check_uint(market_id, "market id"), parse_address(signer), allowed
        )

    def retire_market(self, market_id: int) -> TxResult[ProofMarketEvent]:
        """Retire ``market_id`` (its creator only): it refuses new asks from then on; the asks
        it has are assigned, proved, refunded or slashed as before."""
        return self._transact("retireMarket", check_uint(market_id, "market id"))

    # ---- asks ----

    def create_ask(
        self,
        market_id: int,
        inputs: Sequence[int],
        *,
        reward: int,
        expiry: int,
        proving_time: int,
        refund_address: str | None = None,
    ) -> tuple[int, TxResult[ProofMarketEvent]]:
        """Escrow ``reward`` for a proof of ``inputs``; returns (ask id, result).

        ``expiry`` is the chain time by which it must be assigned; ``proving_time`` the
        seconds the prover then has. Needs a token allowance for the market.
        """
        return self._create_ask(
            "createAsk",
            market_id,
            inputs,
            [check_uint(reward, "reward")],
            (expiry, proving_time, refund_address),
        )

    def create_private_ask(
        self,
        market_id: int,
        inputs: Sequence[int],
        *,
        secret: bytes,
        acl: bytes,
        reward: int,
        expiry: int,
        proving_time: int,
        refund_address: str | None = None,
    ) -> tuple[int, TxResult[ProofMarketEvent]]:
        """As :meth:`create_ask`, with private inputs encrypted for the matching engine
        (``secret`` and ``acl`` from :func:`~reef.proofs.encrypt_secret`)."""
        return self._create_ask(
            "createPrivateAsk",
            market_id,
            inputs,
            [check_uint(reward, "reward")],
            (expiry, proving_time, refund_address),
            [bytes(secret), bytes(acl)],
        )

    def create_auction_ask(
        self,
        market_id: int,
        inputs: Sequence[int],
        *,
        min_price: int,
        max_price: int,
        ramp_time: int,
        expiry: int,
        proving_time: int,
        refund_address: str | None = None,
    ) -> tuple[int, TxResult[ProofMarketEvent]]:
        """A reverse Dutch auction ask: escrows ``max_price``; its price ramps from
        ``min_price`` to ``max_price`` over ``ramp_time`` seconds until a prover locks it."""
        return self._create_ask(
            "createAuctionAsk",
            market_id,
            inputs,
            [
                check_uint(min_price, "min price"),
                check_uint(max_price, "max price"),
                check_uint(ramp_time, "ramp time"),
            ],
            (expiry, proving_time, refund_address),
        )

    def _create_ask(
        self,
        function: str,
        market_id: int,
        inputs: Sequence[int],
        price: Sequence[int],
        terms: tuple[int, int, str | None],
        extra: Sequence[Any] = (),
    ) -> tuple[int, TxResult[ProofMarketEvent]]:
        """Send ``function`` with the terms every ask has around its ``price`` terms (checked)
        and ``extra`` after them; returns (ask id, result).

        ``terms`` are the arguments of the public methods: expiry, proving_time and
        refund_address."""
        expiry, proving_time, refund_address = terms
        result = self._transact(
            function,
            check_uint(market_id, "market id"),
            _uints(inputs, "input"),
            *price,
            check_uint(expiry, "expiry"),
            check_uint(proving_time, "proving time"),
            parse_address(refund_address or self.sender, name="refund address"),
            *extra,
        )
        return result.first(AskCreated).ask_id, result

    def lock(self, ask_id: int) -> TxResult[ProofMarketEvent]:
        """Take an auction ask at its current price (the sender must be a joined prover with
        free compute and the market's penalty of free stake, locked as collateral)."""
        return self._transact("lock", check_uint(ask_id, "ask id"))

    def cancel_ask(self, ask_id: int) -> TxResult[ProofMarketEvent]:
        return self._transact("cancelAsk", check_uint(ask_id, "ask id"))

    def refund_expired(self, ask_id: int) -> TxResult[ProofMarketEvent]:
        return self._transact("refundExpired", check_uint(ask_id, "ask id"))

    def slash(self, ask_id: int) -> TxResult[ProofMarketEvent]:
        return self._transact("slash", check_uint(ask_id, "ask id"))

    def assign(
        self,
        ask_ids: Sequence[int],
        provers: Sequence[str],
        acls: Sequence[bytes] | None = None,
    ) -> TxResult[ProofMarketEvent]:
        """Assign each ask to its prover (matching engine only); ineligible pairs are skipped
        and logged as ``AssignmentSkipped``, never reverting the batch. ``acls`` gives each
        private ask's ACL for its prover (``b""`` for public asks; default all empty)."""
        acl_list = [bytes(a) for a in acls] if acls is not None else [b""] * len(ask_ids)
        if not len(ask_ids) == len(provers) == len(acl_list):
            raise InputError("ask_ids, provers and acls differ in length")
        return self._transact(
            "assign",
            _uints(ask_ids, "ask id"),
            [parse_address(p, name="prover") for p in provers],
            acl_list,
        )

    def set_matching_engine(self, engine: str) -> TxResult[ProofMarketEvent]:
        """Make ``engine`` the market's matching engine (admin only; clears the published key,
        which the new engine publishes on its first step)."""
        return self._transact("setMatchingEngine", parse_address(engine, name="matching engine"))

    def publish_engine_key(self, public_key: bytes) -> TxResult[ProofMarketEvent]:
        """Publish the matching engine's key (64 bytes; the contract checks it is the
        engine's address's key), to which requesters encrypt private inputs."""
        return self._transact("publishEngineKey", bytes(public_key))

    def set_prover_key(self, market_id: int, public_key: bytes) -> TxResult[ProofMarketEvent]:
        """Register the sender's key (64 bytes) for ``market_id``'s private inputs."""
        return self._transact("setProverKey", check_uint(market_id, "market id"), bytes(public_key))

    def submit_proof(self, ask_id: int, proof: Groth16Proof) -> TxResult[ProofMarketEvent]:
        return self._transact(
            "submitProof",
            check_uint(ask_id, "ask id"),
            list(proof.words()),
            _uints(proof.public_signals, "public signal"),
        )

    def submit_tee_proof(
        self, ask_id: int, output: Sequence[int], signature: bytes
    ) -> TxResult[ProofMarketEvent]:
        return self._transact(
            "submitTeeProof", check_uint(ask_id, "ask id"), _uints(output, "output"), signature
        )

    def submit_invalid_input(self, ask_id: int, signature: bytes) -> TxResult[ProofMarketEvent]:
        return self._transact("submitInvalidInput", check_uint(ask_id, "ask id"), signature)

    # ---- provers ----

    def register(
        self, *, compute: int, stake: int, reward_address: str | None = None
    ) -> TxResult[ProofMarketEvent]:
        return self._transact(
            "register",
            parse_address(reward_address or self.sender, name="reward address"),
            check_uint(compute, "compute"),
            check_uint(stake, "stake"),
        )

    def add_stake(self, amount: int) -> TxResult[ProofMarketEvent]:
        return self._transact("addStake", check_uint(amount, "amount"))

    def withdraw_stake(self, amount: int) -> TxResult[ProofMarketEvent]:
        return self._transact("withdrawStake", check_uint(amount, "amount"))

    def deregister(self) -> TxResult[ProofMarketEvent]:
        return self._transact("deregister")

    def join_market(
        self, market_id: int, *, price: int, max_time: int, compute: int
    ) -> TxResult[ProofMarketEvent]:
        return self._transact(
            "joinMarket",
            check_uint(market_id, "market id"),
            check_uint(price, "price"),
            check_uint(max_time, "max time"),
            check_uint(compute, "compute"),
        )

    def request_leave(self, market_id: int) -> TxResult[ProofMarketEvent]:
        return self._transact("requestLeave", check_uint(market_id, "market id"))

    def leave_market(self, market_id: int) -> TxResult[ProofMarketEvent]:
        return self._transact("leaveMarket", check_uint(market_id, "market id"))

    # ---- events ----

    def ask_events(self, ask_id: int, from_block: int = 0) -> list[ProofMarketEvent]:
        """The events of one ask (topic 1 is the ask id for every ask event)."""
        events = self.events(from_block, topics=[check_uint(ask_id, "ask id")])
        # Topic 1 is another field of other events (a market id, a prover): keep the ask's.
        return [e for e in events if getattr(e, "ask_id", None) == ask_id]

    def _ask_event(self, cls: type[_E], ask_id: int, from_block: int) -> _E | None:
        """The first ``cls`` event of ask ``ask_id`` (an ask event: its topic 1 is the ask id),
        or None."""
        found = self.events_of(cls, from_block, topics=[check_uint(ask_id, "ask id")])
        return found[0] if found else None
