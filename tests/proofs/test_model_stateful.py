"""Random sequences of operations against ProofMarket.vy and the Python model agree on every
outcome (the same revert reason, the same skips, the same states) and every token balance, and
the contract always holds exactly the open rewards plus the stakes (tokens are conserved).
Two markets: a public one and one whose asks carry private inputs (provers' keys, ACLs); asks
are plain, private, or reverse Dutch auctions that provers lock at the ramping price. A market's
creator (or someone else, refused) may retire a market: it takes no new asks, and the asks it
has go on as before."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from proofs.proofs_support import FUNDS, ProofChain
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ContractRevertError, ProofError
from reef.proofs import ProofMarketClient, SkipReason
from reef.proofs._model import ProofMarketModel

PENALTY = 50
ENCLAVE = Account.from_key(b"\x11" * 32)
STRANGER = Account.from_key(b"\x22" * 32)
KEYS = {
    account.address: Secp256k1PrivateKey(bytes(account.key)).public_key.raw
    for account in (ENCLAVE, STRANGER)
}


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args, **kwargs)
    except ContractRevertError as exc:
        return "revert", exc.reason
    except ProofError as exc:
        return "revert", exc.message if hasattr(exc, "message") else str(exc).split(" (")[0]


class ProofMarketMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.chain = ProofChain.create(n_users=6)
        self.model = ProofMarketModel()
        users = self.chain.users
        self.requesters, self.provers, self.ivs = users[0:2], users[2:5], users[5]
        for user in users:
            self.model.balances[user.address] = FUNDS
        # The model's clock starts where the chain's is: ProofChain.create mined 14 blocks (a
        # second each), and a model 4 s behind refused a leave the chain already allowed.
        self.now = self.chain.next_time() - 1
        market = self.chain.market()
        self._pin()
        self.market_id, _ = market.create_tee_market(
            image_id=b"\x01" * 32, penalty=PENALTY, n_inputs=1, ivs=self.ivs.address
        )
        self._pin()
        market.set_tee_signer(self.market_id, ENCLAVE.address)
        creator = self.chain.deployer.address
        mid = self.model.create_tee_market(
            creator, penalty=PENALTY, ivs=self.ivs.address, n_inputs=1
        )
        self.model.set_tee_signer(creator, mid, ENCLAVE.address, True)
        # The private market: its provers' keys must be its enclave keys (a TEE market).
        self._pin()
        self.private_id, _ = market.create_tee_market(
            image_id=b"\x02" * 32, penalty=PENALTY, n_inputs=1, ivs=self.ivs.address,
            private_inputs=True,
        )  # fmt: skip
        self._pin()
        market.set_tee_signer(self.private_id, ENCLAVE.address)
        pid = self.model.create_tee_market(
            creator, penalty=PENALTY, ivs=self.ivs.address, n_inputs=1, private_inputs=True
        )
        self.model.set_tee_signer(creator, pid, ENCLAVE.address, True)
        self.markets = [self.market_id, self.private_id]
        self.asks: list[int] = []
        # Start with every prover staked and quoting, so most sequences reach assignment.
        quotes = [(10, 10, 1, 120), (50, 30, 2, 60), (100, 5, 1, 200)]
        for account, (price, max_time, compute, stake) in zip(self.provers, quotes, strict=True):
            client = self._client(account)
            self._pin()
            client.register(compute=2, stake=stake)
            self._pin()
            client.join_market(self.market_id, price=price, max_time=max_time, compute=compute)
            self.model.register(account.address, compute=2, stake=stake)
            self.model.join_market(
                account.address, mid, price=price, max_time=max_time, compute=compute
            )
        for account in (self.provers[0], self.provers[2]):  # compute left for one more market
            self._pin()
            self._client(account).join_market(self.private_id, price=10, max_time=10, compute=1)
            self.model.join_market(account.address, pid, price=10, max_time=10, compute=1)

    def _pin(self) -> int:
        self.now += 1
        self.chain.at(self.now)
        return self.now

    def _client(self, account: Any) -> ProofMarketClient:
        return self.chain.market(account)

    def _both(self, chain_call: Any, model_call: Any) -> None:
        now = self._pin()
        on_chain = _outcome(chain_call)
        in_model = _outcome(model_call, now)
        assert on_chain[0] == in_model[0], (on_chain, in_model)
        if on_chain[0] == "revert":
            assert on_chain[1] == in_model[1]
            self.now -= 1  # a refused call mines no block

    def _ask(self, index: int) -> int:
        return self.asks[index % len(self.asks)] if self.asks else 1

    # ---- requesters ----

    @rule(
        who=st.integers(0, 1),
        reward=st.integers(1, 200),
        expiry=st.integers(20, 400),
        time=st.integers(1, 60),
        market=st.integers(0, 1),
        secret=st.none() | st.tuples(st.binary(max_size=3), st.binary(max_size=2)),
    )
    def create_ask(
        self,
        who: int,
        reward: int,
        expiry: int,
        time: int,
        market: int,
        secret: tuple[bytes, bytes] | None,
    ) -> None:
        account = self.requesters[who]
        market_id = self.markets[market]
        now = self.now + 1

        def on_chain() -> Any:
            client = self._client(account)
            timing = {"reward": reward, "expiry": now + expiry, "proving_time": time}
            if secret is None:
                return client.create_ask(market_id, [now], **timing)
            return client.create_private_ask(
                market_id, [now], secret=secret[0], acl=secret[1], **timing
            )

        self._both(
            on_chain,
            lambda t: self.model.create_ask(
                account.address, market_id, [t], reward=reward, expiry=t + expiry,
                proving_time=time, refund=account.address, now=t,
                secret=None if secret is None else secret[0],
                acl=b"" if secret is None else secret[1],
            ),
        )  # fmt: skip
        self.asks = list(self.model.asks)

    @rule(
        who=st.integers(0, 1),
        low=st.integers(0, 120),
        high=st.integers(0, 150),
        ramp=st.integers(0, 60),
        time=st.integers(1, 60),
        market=st.integers(0, 1),
    )
    def create_auction(
        self, who: int, low: int, high: int, ramp: int, time: int, market: int
    ) -> None:
        account, market_id = self.requesters[who], self.markets[market]
        now = self.now + 1
        self._both(
            lambda: self._client(account).create_auction_ask(
                market_id, [now], min_price=low, max_price=high, ramp_time=ramp,
                expiry=now + 200, proving_time=time,
            ),
            lambda t: self.model.create_auction_ask(
                account.address, market_id, [t], min_price=low, max_price=high,
                ramp_time=ramp, expiry=t + 200, proving_time=time, refund=account.address, now=t,
            ),
        )  # fmt: skip
        self.asks = list(self.model.asks)

    # Rarely (after a few asks), so most sequences keep both markets taking asks.
    @precondition(lambda self: len(self.asks) >= 3)
    @rule(creator=st.booleans(), market=st.integers(0, 2))
    def retire(self, creator: bool, market: int) -> None:
        account = self.chain.deployer if creator else self.requesters[0]
        market_id = [*self.markets, 99][market]  # 99: no such market (so it has no creator)
        self._both(
            lambda: self._client(account).retire_market(market_id),
            lambda t: self.model.retire_market(account.address, market_id),
        )

    @precondition(lambda self: bool(self.asks))
    @rule(who=st.integers(0, 2), ask=st.integers(0, 50))
    def lock(self, who: int, ask: int) -> None:
        account, ask_id = self.provers[who], self._ask(ask)
        self._both(
            lambda: self._client(account).lock(ask_id),
            lambda t: self.model.lock(account.address, ask_id, t),
        )
        if self.model.asks[ask_id].auction is not None:
            assert self.chain.market().ask_price(ask_id) == self.model.asks[ask_id].price

    @rule(who=st.integers(0, 2), market=st.integers(0, 1), honest=st.booleans())
    def set_key(self, who: int, market: int, honest: bool) -> None:
        account, market_id = self.provers[who], self.markets[market]
        owner = ENCLAVE if honest else STRANGER
        self._both(
            lambda: self._client(account).set_prover_key(market_id, KEYS[owner.address]),
            lambda t: self.model.set_prover_key(account.address, market_id, owner.address),
        )

    @precondition(lambda self: bool(self.asks))
    @rule(who=st.integers(0, 1), ask=st.integers(0, 50))
    def cancel(self, who: int, ask: int) -> None:
        account, ask_id = self.requesters[who], self._ask(ask)
        self._both(
            lambda: self._client(account).cancel_ask(ask_id),
            lambda t: self.model.cancel_ask(account.address, ask_id),
        )

    @precondition(lambda self: bool(self.asks))
    @rule(ask=st.integers(0, 50))
    def refund_expired(self, ask: int) -> None:
        ask_id = self._ask(ask)
        self._both(
            lambda: self._client(self.requesters[0]).refund_expired(ask_id),
            lambda t: self.model.refund_expired(ask_id, t),
        )

    @precondition(lambda self: bool(self.asks))
    @rule(ask=st.integers(0, 50))
    def slash(self, ask: int) -> None:
        ask_id = self._ask(ask)
        self._both(
            lambda: self._client(self.requesters[1]).slash(ask_id),
            lambda t: self.model.slash(ask_id, t),
        )

    # ---- matching engine and provers' proofs ----

    @precondition(lambda self: bool(self.asks))
    @rule(
        pairs=st.lists(
            st.tuples(st.integers(0, 50), st.integers(0, 2), st.booleans()), min_size=1, max_size=4
        )
    )
    def assign(self, pairs: list[tuple[int, int, bool]]) -> None:
        asks = [self._ask(a) for a, _, _ in pairs]
        provers = [self.provers[p].address for _, p, _ in pairs]
        acls = [b"\x01" * 129 if with_acl else b"" for _, _, with_acl in pairs]
        now = self._pin()
        result = self._client(self.chain.engine).assign(asks, provers, acls)
        skipped = [
            (e.ask_id, e.prover, SkipReason(e.reason))
            for e in result.events
            if type(e).__name__ == "AssignmentSkipped"
        ]
        expected = []
        for ask_id, prover, acl in zip(asks, provers, acls, strict=True):
            reason = self.model.try_assign(ask_id, prover, now, acl)
            if reason is not None:
                expected.append((ask_id, prover, reason))
        assert skipped == expected

    @precondition(lambda self: bool(self.asks))
    @rule(ask=st.integers(0, 50), honest=st.booleans())
    def submit_tee(self, ask: int, honest: bool) -> None:
        ask_id = self._ask(ask)
        signer = ENCLAVE if honest else STRANGER
        market = self._client(self.provers[0])
        output = [7]

        def on_chain() -> Any:
            digest = market.tee_digest(ask_id, output)
            signature = signer.sign_message(encode_defunct(primitive=digest)).signature
            return market.submit_tee_proof(ask_id, output, bytes(signature))

        self._both(on_chain, lambda t: self.model.submit_tee_proof(ask_id, signer.address, t))

    @precondition(lambda self: bool(self.asks))
    @rule(ask=st.integers(0, 50), honest=st.booleans())
    def submit_invalid(self, ask: int, honest: bool) -> None:
        ask_id = self._ask(ask)
        signer = self.ivs if honest else STRANGER
        market = self._client(self.provers[1])

        def on_chain() -> Any:
            digest = market.invalid_input_digest(ask_id)
            signature = signer.sign_message(encode_defunct(primitive=digest)).signature
            return market.submit_invalid_input(ask_id, bytes(signature))

        self._both(on_chain, lambda t: self.model.submit_invalid_input(ask_id, signer.address, t))

    # ---- provers ----

    @rule(who=st.integers(0, 2), compute=st.integers(0, 3), stake=st.integers(0, 150))
    def register(self, who: int, compute: int, stake: int) -> None:
        account = self.provers[who]
        self._both(
            lambda: self._client(account).register(compute=compute, stake=stake),
            lambda t: self.model.register(account.address, compute=compute, stake=stake),
        )

    @rule(
        who=st.integers(0, 2),
        price=st.integers(0, 150),
        max_time=st.integers(0, 60),
        compute=st.integers(0, 2),
        market=st.integers(0, 1),
    )
    def join(self, who: int, price: int, max_time: int, compute: int, market: int) -> None:
        account, market_id = self.provers[who], self.markets[market]
        self._both(
            lambda: self._client(account).join_market(
                market_id, price=price, max_time=max_time, compute=compute
            ),
            lambda t: self.model.join_market(
                account.address, market_id, price=price, max_time=max_time, compute=compute
            ),
        )

    @rule(who=st.integers(0, 2), amount=st.integers(0, 120), add=st.booleans())
    def stake(self, who: int, amount: int, add: bool) -> None:
        account = self.provers[who]
        client = self._client(account)
        if add:
            self._both(
                lambda: client.add_stake(amount),
                lambda t: self.model.add_stake(account.address, amount),
            )
        else:
            self._both(
                lambda: client.withdraw_stake(amount),
                lambda t: self.model.withdraw_stake(account.address, amount),
            )

    @rule(who=st.integers(0, 2), step=st.integers(0, 2), market=st.integers(0, 1))
    def leave(self, who: int, step: int, market: int) -> None:
        account, market_id = self.provers[who], self.markets[market]
        client = self._client(account)
        if step == 0:
            self._both(
                lambda: client.request_leave(market_id),
                lambda t: self.model.request_leave(account.address, market_id, t),
            )
        elif step == 1:
            self._both(
                lambda: client.leave_market(market_id),
                lambda t: self.model.leave_market(account.address, market_id, t),
            )
        else:
            self._both(client.deregister, lambda t: self.model.deregister(account.address))

    @rule(seconds=st.integers(1, 45))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    # ---- invariants ----

    @invariant()
    def tokens_are_conserved_and_balances_agree(self) -> None:
        if not hasattr(self, "chain"):
            return
        held = self.chain.balance(self.chain.market_address)
        assert held == self.model.escrow() == self.model.balances["market"]
        for user in self.chain.users:
            assert self.chain.balance(user.address) == self.model.balances[user.address]

    @invariant()
    def states_agree(self) -> None:
        if not hasattr(self, "chain"):
            return
        market = self.chain.market()
        at = self.now + 1
        self.chain.at(at)
        self.now = at - 1
        for ask_id in self.asks[-3:]:
            stored = self.model.asks[ask_id].state
            assert market.ask(ask_id).state.value in {stored.value, 8, 9}


ProofMarketMachine.TestCase.settings = settings(
    max_examples=4,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestProofMarketModel = pytest.mark.slow(ProofMarketMachine.TestCase)
