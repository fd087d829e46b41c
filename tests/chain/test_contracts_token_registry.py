"""The test stable token (ERC-20, 6 decimals, owner mints) and the KMS registry (Oyster's
KmsVerifiable), through reef's clients on a real EVM."""

from __future__ import annotations

import pytest
from market_support import FUNDS, TestChain

from reef.chain import ImageApproved, ImageRevoked, KmsRegistryClient, Revert, TokenClient
from reef.errors import ContractRevertError, InputError

MAX = 2**256 - 1


@pytest.fixture(scope="module")
def chain() -> TestChain:
    return TestChain.create(n_users=3, n_providers=0)


# ---- token ----


def test_token_metadata(chain: TestChain) -> None:
    token = chain.token()
    assert (token.name(), token.symbol(), token.decimals()) == ("reef test USD", "rUSD", 6)
    assert token.owner() == chain.deployer.address
    assert token.total_supply() == 3 * FUNDS


def test_only_the_owner_mints(chain: TestChain) -> None:
    owner, user = chain.token(chain.deployer), chain.token(chain.users[0])
    supply = owner.total_supply()
    with pytest.raises(ContractRevertError, match=Revert.ONLY_TOKEN_OWNER_MINT) as info:
        user.mint(chain.users[0].address, 1)
    assert info.value.reason == Revert.ONLY_TOKEN_OWNER_MINT
    owner.mint(chain.users[2].address, 5)
    assert owner.total_supply() == supply + 5


def test_transfer_and_balance_checks(chain: TestChain) -> None:
    alice, bob = chain.users[0], chain.users[1]
    token = chain.token(alice)
    a, b = token.balance(), token.balance(bob.address)
    token.transfer(bob.address, 123)
    assert (token.balance(), token.balance(bob.address)) == (a - 123, b + 123)
    with pytest.raises(ContractRevertError, match=Revert.INSUFFICIENT_BALANCE):
        token.transfer(bob.address, a)
    with pytest.raises(ContractRevertError, match=Revert.TRANSFER_TO_ZERO):
        token.transfer("0x" + "00" * 20, 1)


def test_allowances_and_transfer_from(chain: TestChain) -> None:
    alice, bob, carol = chain.users
    alice_token, bob_token = chain.token(alice), chain.token(bob)
    alice_token.approve(bob.address, 10)
    assert alice_token.allowance(alice.address, bob.address) == 10

    def pull(amount: int) -> None:
        fn = bob_token.contract.functions.transferFrom(alice.address, carol.address, amount)
        bob_token._tx.send(fn, "Token.transferFrom")

    with pytest.raises(ContractRevertError, match="exceeds allowance"):
        pull(11)
    pull(4)
    assert alice_token.allowance(alice.address, bob.address) == 6
    # An allowance of 2**256-1 is unlimited: transferFrom leaves it unchanged.
    alice_token.approve(bob.address, MAX)
    pull(7)
    assert alice_token.allowance(alice.address, bob.address) == MAX


def test_token_ownership_transfer(chain: TestChain) -> None:
    token = TokenClient.deploy(chain.w3, chain.deployer, name="other", symbol="OTH")
    assert (token.name(), token.symbol(), token.total_supply()) == ("other", "OTH", 0)
    token.transfer_ownership(chain.users[0].address)
    with pytest.raises(ContractRevertError, match=Revert.ONLY_TOKEN_OWNER_MINT):
        token.mint(chain.deployer.address, 1)
    # The new owner can mint.
    TokenClient(chain.w3, token.address, account=chain.users[0]).mint(chain.users[0].address, 9)
    assert token.balance(chain.users[0].address) == 9


# ---- KMS registry ----

IMAGE_A = bytes.fromhex("a6b0824d3c47f51542b3a18e6245c408490bef88ddc8d5e1bf8b95ec7eba1602")
IMAGE_B = bytes.fromhex("c28909dc8803cf0edf6113f3fb81d0494f4c92b63087242200e18a5be347aacd")


def test_registry_approves_and_revokes_image_ids(chain: TestChain) -> None:
    registry = KmsRegistryClient.deploy(chain.w3, chain.deployer, [IMAGE_A])
    assert registry.owner() == chain.deployer.address
    assert registry.is_approved(IMAGE_A)
    assert registry.is_approved(IMAGE_A.hex())  # hex accepted too
    assert not registry.is_approved(IMAGE_B)

    result = registry.approve_images(["0x" + IMAGE_B.hex()])
    (approved,) = result.events
    assert isinstance(approved, ImageApproved)
    assert approved.image_id == IMAGE_B
    assert registry.is_approved(IMAGE_B)
    assert registry.contract.functions.images(IMAGE_B).call() is True

    (revoked,) = registry.revoke_images([IMAGE_A]).events
    assert isinstance(revoked, ImageRevoked)
    assert revoked.image_id == IMAGE_A
    assert not registry.is_approved(IMAGE_A)
    # The whole history, from the approval in the constructor on.
    history = [(type(e).__name__, e.image_id) for e in registry.events()]
    assert history == [
        ("ImageApproved", IMAGE_A),
        ("ImageApproved", IMAGE_B),
        ("ImageRevoked", IMAGE_A),
    ]


def test_only_the_registry_owner_changes_it(chain: TestChain) -> None:
    stranger = KmsRegistryClient(chain.w3, chain.deployment.kms_registry, account=chain.users[0])
    with pytest.raises(ContractRevertError, match=Revert.ONLY_REGISTRY_OWNER_APPROVE):
        stranger.approve_images([IMAGE_A])
    with pytest.raises(ContractRevertError, match=Revert.ONLY_REGISTRY_OWNER_REVOKE):
        stranger.revoke_images([IMAGE_A])
    with pytest.raises(ContractRevertError, match=Revert.ONLY_REGISTRY_OWNER_TRANSFER):
        stranger.transfer_ownership(chain.users[0].address)


def test_registry_batches_above_the_contracts_bound(chain: TestChain) -> None:
    registry = KmsRegistryClient.deploy(chain.w3, chain.deployer)
    ids = [i.to_bytes(32, "big") for i in range(1, 301)]  # 300 > 256: two transactions
    result = registry.approve_images(ids)
    assert len(result.events) == 300
    assert all(registry.is_approved(i) for i in (ids[0], ids[255], ids[256], ids[299]))


def test_registry_refuses_bad_image_ids(chain: TestChain) -> None:
    registry = chain.registry(chain.deployer)
    with pytest.raises(InputError, match="32 bytes"):
        registry.is_approved(b"short")
    with pytest.raises(InputError, match="image id"):
        registry.approve_images(["zz"])
    with pytest.raises(InputError, match="at least one"):
        registry.approve_images([])
    with pytest.raises(InputError, match="at most 256"):
        KmsRegistryClient.deploy(chain.w3, chain.deployer, [bytes(32)] * 257)
