"""Creating markets: a Groth16 market (store the circuit's artifacts, deploy its verifier,
register it) or a TEE market (an image id whose enclaves' signatures are the proofs).

A market's artifacts (``.wasm``, ``.zkey``, verification key) are stored content-addressed
(:class:`ArtifactStore`, files named by their SHA-256) and the market records, on chain, the
hash of the three hashes plus a metadata JSON naming each file's hash, the circuit's public
input names and the market's name. A prover fetches the files by hash and checks them, so a
market's circuit cannot change under it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from reef.chain import Address, Sender, Transactor, translate_errors
from reef.encoding import json_depth
from reef.errors import InputError, ProofError
from reef.proofs._client import ProofMarketClient
from reef.proofs._groth16 import compile_verifier, load_verification_key
from reef.proofs._zkey import check_zkey_matches

__all__ = [
    "ArtifactStore",
    "CircuitArtifacts",
    "MarketMetadata",
    "create_groth16_market",
    "create_tee_market",
    "deploy_verifier",
    "retire_market",
]

_NAME_MAX = 64
_DIGEST = re.compile(r"[0-9a-f]{64}")
_METADATA_DEPTH = 4  # an object of strings, a list of names and the artifacts' object


_MADE_BY = {
    "--wasm": "circom's --wasm output (circuit_js/circuit.wasm)",
    "--zkey": "`snarkjs groth16 setup` (then `zkey contribute`/`beacon`)",
    "--vkey": "`snarkjs zkey export verificationkey circuit.zkey verification_key.json`",
}
"""What makes each circuit file, for the refusal of a path that names none."""


def _sha256(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class CircuitArtifacts:
    """The three files of a circom Groth16 circuit."""

    wasm: Path
    zkey: Path
    vkey: Path

    @classmethod
    def in_folder(cls, folder: Path) -> CircuitArtifacts:
        """The files as snarkjs's workflow names them (and reef's examples ship them):
        ``circuit.wasm``, ``circuit.zkey`` and ``verification_key.json`` in ``folder``."""
        return cls(
            folder / "circuit.wasm", folder / "circuit.zkey", folder / "verification_key.json"
        )

    @classmethod
    def given(cls, wasm: Path | None, zkey: Path | None, vkey: Path | None) -> CircuitArtifacts:
        """The files a market's creator named (``--wasm``, ``--zkey``, ``--vkey``), checked
        before seconds on the chain: each names a readable file (else the refusal says which
        snarkjs step makes it), the verification key is the ``.zkey``'s own, and none is
        missing.

        Raises:
            InputError: the first such file, keys that differ, or a file not named.
        """
        named = {"--wasm": wasm, "--zkey": zkey, "--vkey": vkey}
        for flag, path in named.items():
            if path is not None and not path.is_file():
                why = "is a directory" if path.is_dir() else "no such file"
                raise InputError(
                    f"{flag} {path}: {why}",
                    hint=f"give the file {_MADE_BY[flag]} makes; e.g. examples/proofs/poseidon/ "
                    "has all three",
                )
        if zkey is not None and vkey is not None:
            check_zkey_matches(zkey, load_verification_key(vkey), vkey)
        if wasm is None or zkey is None or vkey is None:
            raise InputError("--groth16 needs --wasm, --zkey and --vkey")
        return cls(wasm, zkey, vkey)

    def hashes(self) -> dict[str, str]:
        return {"wasm": _sha256(self.wasm), "zkey": _sha256(self.zkey), "vkey": _sha256(self.vkey)}


@dataclass(frozen=True)
class MarketMetadata:
    """What a market's on-chain ``metadata`` string holds (JSON)."""

    name: str
    public_inputs: tuple[str, ...]
    artifacts: Mapping[str, str]
    """Role (``wasm``, ``zkey``, ``vkey``) → SHA-256 hex of the file."""
    private_inputs: tuple[str, ...] = ()
    """The circuit's private input signals an ask supplies encrypted (empty: none)."""

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "name": self.name,
            "public_inputs": list(self.public_inputs),
            "artifacts": dict(self.artifacts),
        }
        if self.private_inputs:  # absent for public markets: their metadata stays as it was
            data["private_inputs"] = list(self.private_inputs)
        return json.dumps(
            data,
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> MarketMetadata:
        """The metadata a market's creator wrote (anyone may create a market).

        Raises:
            ProofError: it is not reef's metadata JSON.
        """
        # Measured before parsing: json recurses per bracket (see reef.encoding.json_depth).
        if json_depth(text, beyond=_METADATA_DEPTH) > _METADATA_DEPTH:
            raise ProofError("the market's metadata is not reef's JSON: it nests too deep")
        try:
            data = json.loads(text)
            return cls(
                name=str(data["name"]),
                public_inputs=tuple(str(n) for n in data["public_inputs"]),
                artifacts={str(k): str(v) for k, v in dict(data.get("artifacts", {})).items()},
                private_inputs=tuple(str(n) for n in data.get("private_inputs", [])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProofError(f"the market's metadata is not reef's JSON: {exc}") from exc

    def artifacts_hash(self) -> bytes:
        """The 32 bytes recorded on chain: SHA-256 over the role-sorted file hashes."""
        joined = ",".join(f"{k}={self.artifacts[k]}" for k in sorted(self.artifacts))
        return hashlib.sha256(joined.encode()).digest()


@dataclass(frozen=True)
class ArtifactStore:
    """Files kept by SHA-256 under ``root`` (``$REEF_HOME/proofs/artifacts`` by default)."""

    root: Path

    def put(self, path: Path) -> str:
        """Store a copy of ``path``; returns its SHA-256 hex."""
        digest = _sha256(path)
        target = self.root / digest
        if not target.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            shutil.copyfile(path, partial)
            partial.replace(target)  # atomic: a reader never sees half a file
        return digest

    def get(self, digest: str) -> Path:
        """The stored file with this hash, checked.

        Raises:
            ProofError: ``digest`` is not a SHA-256 (a market's creator wrote it: it must not
                name a path), no such file, or its content no longer matches the hash.
        """
        if not _DIGEST.fullmatch(digest):
            raise ProofError(
                f"artifact name {digest[:80]!r} is not a SHA-256 (64 lowercase hex digits)",
                hint="the market's metadata names each artifact by its hash; this market's "
                "creator wrote something else",
            )
        path = self.root / digest
        if not path.is_file():
            raise ProofError(
                f"artifact {digest[:16]}... is not in {self.root}",
                hint="the market's creator must share its files (reef proofs market create stores them)",
            )
        if _sha256(path) != digest:
            raise ProofError(f"stored artifact {path} does not match its hash; delete it")
        return path


def deploy_verifier(w3: Web3, account: Sender, vkey: Mapping[str, Any]) -> Address:
    """Compile and deploy the Vyper Groth16 verifier for ``vkey``; returns its address."""
    compiled = compile_verifier(vkey)
    transactor = Transactor(w3, account)
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    with translate_errors("deploying the Groth16 verifier"):
        constructor = factory.constructor()
    _, receipt = transactor.send(constructor, "deploy Groth16 verifier")
    address = receipt["contractAddress"]
    if address is None:  # pragma: no cover - a successful creation always has one
        raise ProofError("deploying the verifier produced no contract address")
    return Address(Web3.to_checksum_address(address))


def create_groth16_market(
    client: ProofMarketClient,
    artifacts: CircuitArtifacts,
    *,
    public_inputs: Sequence[str],
    store: ArtifactStore,
    penalty: int,
    name: str = "",
    ivs: str | None = None,
    private_inputs: Sequence[str] = (),
) -> int:
    """Store ``artifacts``, deploy their verifier and create the market; returns its id.

    ``public_inputs`` are the circuit's public input signal names in declaration order (the
    ask's on-chain inputs follow that order; circom puts outputs first in the public signals).
    ``private_inputs`` names the input signals asks give encrypted (the market then takes only
    asks with private inputs).
    """
    if set(public_inputs) & set(private_inputs):
        raise InputError(
            f"inputs named both public and private: {sorted(set(public_inputs) & set(private_inputs))}"
        )
    if len(name) > _NAME_MAX:
        raise InputError(f"a market name is at most {_NAME_MAX} characters")
    vkey = load_verification_key(artifacts.vkey)
    # Another circuit's or setup's key would make a verifier that rejects every proof of this
    # .zkey: the market's provers would be slashed for each ask they take.
    check_zkey_matches(artifacts.zkey, vkey, artifacts.vkey)
    if len(public_inputs) > int(vkey["nPublic"]):
        raise InputError(
            f"{len(public_inputs)} public inputs named but the circuit has {vkey['nPublic']} public signals"
        )
    hashes = {role: store.put(getattr(artifacts, role)) for role in ("wasm", "zkey", "vkey")}
    metadata = MarketMetadata(
        name or "groth16", tuple(public_inputs), hashes, tuple(private_inputs)
    )
    verifier = deploy_verifier(client.w3, client.account, vkey)
    market_id, _ = client.create_groth16_market(
        verifier=verifier,
        artifacts_hash=metadata.artifacts_hash(),
        penalty=penalty,
        n_inputs=len(public_inputs),
        ivs=ivs,
        metadata=metadata.to_json(),
        private_inputs=bool(private_inputs),
    )
    return market_id


def create_tee_market(
    client: ProofMarketClient,
    *,
    image_id: bytes,
    penalty: int,
    n_inputs: int = 1,
    name: str = "",
    ivs: str | None = None,
    private_inputs: Sequence[str] = (),
) -> int:
    """Create a TEE market for enclaves of ``image_id`` taking ``n_inputs`` public inputs;
    returns its id. Its metadata names it and, with ``private_inputs``, the input signals asks
    give encrypted (the market then takes only asks with private inputs); a TEE market has no
    circuit files. Register its signers with :func:`~reef.proofs.register_tee_signer`.
    """
    fields: dict[str, Any] = {"name": name or "tee", "public_inputs": [], "artifacts": {}}
    if private_inputs:
        fields["private_inputs"] = list(private_inputs)
    market_id, _ = client.create_tee_market(
        image_id=image_id,
        penalty=penalty,
        n_inputs=n_inputs,
        ivs=ivs,
        # (key order and spacing as `reef proofs market create --tee` has always written it)
        metadata=json.dumps(fields),
        private_inputs=bool(private_inputs),
    )
    return market_id


def retire_market(client: ProofMarketClient, market_id: int) -> str | None:
    """Retire ``market_id`` (it takes no new asks; those it has end as before), as its creator
    (the sender); returns the transaction hash, or None when it was retired already.

    Raises:
        ProofError: no such market, or the sender did not create it (refused before any
            transaction).
    """
    market = client.market(market_id)
    if market.creator.lower() != client.sender.lower():
        raise ProofError(
            f"market {market_id} was created by {market.creator}, not {client.sender}",
            hint="only a market's creator can retire it: pass its --key",
        )
    if client.retired(market_id):
        return None
    return client.retire_market(market_id).tx_hash
