"""`reef kms contract ...`: a KMS registry contract, the image ids whose enclaves may derive keys
under its address (oyster-cvm's kms-contract): deploy one, approve and revoke image ids, check one.

Exit codes: 0 ok, 1 refused or failed, 2 usage error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any

import typer

from reef.cli._options import Flags, with_flags
from reef.cli._output import failing, print_result, tell
from reef.encoding import parse_hex
from reef.errors import InputError
from reef.home import ReefHome

__all__ = ["contract_app"]

contract_app = typer.Typer(
    help="A KMS registry contract: the image ids whose enclaves may derive keys under its "
    "address (oyster-cvm's kms-contract).",
    no_args_is_help=True,
)


# --- the KMS registry contract -------------------------------------------------------------------

_Registry = Annotated[
    str | None,
    typer.Option(
        "--contract", help="The registry's address (default: the local network's KMS registry)."
    ),
]
_ImageIds = Annotated[list[str], typer.Argument(help="Image ids (64 hex digits, 0x optional).")]


@dataclasses.dataclass(frozen=True)
class _Chain:
    w3: Any
    account: Any
    note: str
    registry: str | None
    """The local network's KMS registry, when this home knows one on this chain."""


def _chain(flags: Flags, *, need_account: bool) -> _Chain:
    """The chain (``--rpc``), the sending account (``--key``) and the default registry for a
    `kms contract` command.

    Raises:
        ConfigError: nothing says where the chain is, or no account to send from.
        RPCError: the endpoint does not answer.
    """
    from reef.node import open_chain

    # Any EVM chain will do: the registry needs no compute market.
    session = open_chain(
        ReefHome.from_env(),
        rpc=flags.rpc,
        key=flags.key,
        need_account=need_account,
        hint="start the local network with `reef up`, or pass --rpc URL",
    )
    registry = None
    for known in (session.network, session.devnet):
        deployment = getattr(known, "deployment", None) if known is not None else None
        if deployment is not None and deployment.chain_id == int(session.w3.eth.chain_id):
            registry = str(deployment.kms_registry)
            break
    return _Chain(session.w3, session.account, session.account_note, registry)


def _image_ids(values: list[str]) -> list[str]:
    return [parse_hex(v, name="image id", length=32).hex() for v in values]


def _registry(chain: _Chain, contract: str | None) -> Any:
    from reef.chain import KmsRegistryClient, parse_address
    from reef.cli._output import tx_printer

    address = contract or chain.registry
    if address is None:
        raise InputError(
            "which registry? this home knows no KMS registry on that chain",
            hint="pass --contract ADDR (`reef kms contract deploy` makes one)",
        )
    return KmsRegistryClient(
        chain.w3,
        parse_address(address, name="--contract"),
        account=chain.account,
        progress=tx_printer,
    )


def _print(out: dict[str, Any], as_json: bool, **shown: str) -> None:
    """A registry command's result: ``out`` as JSON, or for people with the ``shown`` fields
    (lists and flags) spelt out."""
    print_result(out, as_json, shown={**out, **shown})


@contract_app.command("deploy")
@with_flags("rpc", "key", "as_json")
def contract_deploy_cmd(
    flags: Flags,
    approve: Annotated[
        list[str] | None,
        typer.Option("--approve", help="An image id to approve at once (repeatable, up to 256)."),
    ] = None,
) -> None:
    """Deploy a new KMS registry owned by the sending account (it alone approves and revokes)."""
    from reef.chain import KmsRegistryClient
    from reef.cli._output import note, tx_printer

    with failing(input_code=2):
        ids = _image_ids(approve or [])
        chain = _chain(flags, need_account=True)
        note(f"account {chain.note}")
        registry = KmsRegistryClient.deploy(chain.w3, chain.account, ids, progress=tx_printer)
        owner = registry.owner()
    out = {"contract": str(registry.address), "owner": str(owner), "approved": ids}
    _print(out, flags.as_json, approved=", ".join(ids) or "(none)")


def _change(verb: str, image_ids: list[str], contract: str | None, flags: Flags) -> None:
    from reef.cli._output import note

    with failing(input_code=2):
        ids = _image_ids(image_ids)
        chain = _chain(flags, need_account=True)
        note(f"account {chain.note}")
        registry = _registry(chain, contract)
        send = registry.approve_images if verb == "approved" else registry.revoke_images
        result = send(ids)
    out = {
        "contract": str(registry.address),
        verb: ids,
        "tx_hash": result.tx_hash,
        "block": result.block_number,
    }
    _print(out, flags.as_json, **{verb: ", ".join(ids)})


def _change_cmd(verb: str, doc: str) -> Callable[..., None]:
    """``approve`` and ``revoke``: the same arguments, one registry transaction each."""

    @with_flags("rpc", "key", "as_json")
    def command(flags: Flags, image_ids: _ImageIds, contract: _Registry = None) -> None:
        _change(verb, image_ids, contract, flags)

    command.__doc__ = doc
    return command


contract_app.command("approve")(
    _change_cmd(
        "approved",
        "Approve image ids: their enclaves may derive keys under this address (owner only).",
    )
)
contract_app.command("revoke")(
    _change_cmd(
        "revoked",
        "Revoke image ids: the KMS stops deriving their keys under this address (owner only).",
    )
)


@contract_app.command("verify")
@with_flags("rpc", "key", "as_json")
def contract_verify_cmd(
    flags: Flags,
    image_id: Annotated[str, typer.Argument(help="An image id (64 hex digits, 0x optional).")],
    contract: _Registry = None,
) -> None:
    """Ask the registry whether an image is approved (`oysterKMSVerify`, what the KMS asks).

    Exits 0 when it is, 1 when it is not.
    """
    with failing(input_code=2):
        (wanted,) = _image_ids([image_id])
        chain = _chain(flags, need_account=False)
        registry = _registry(chain, contract)
        approved = registry.is_approved(wanted)
    out = {"contract": str(registry.address), "image_id": wanted, "approved": approved}
    _print(out, flags.as_json, approved="yes" if approved else "no (not approved)")
    if not approved:
        if not flags.as_json:
            tell(f"image {wanted} is not approved by {registry.address}")
        raise typer.Exit(1)
