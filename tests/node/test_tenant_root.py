"""A tenant on another home than its provider verifies the provider's dev TEE enclaves.

The operator walk: a tenant whose ``$REEF_HOME`` is not the provider's could verify nothing with
``reef deploy``'s default ``--root dev`` (its own home's root, or none), and the refusal said only
that a dev TEE root is the enclave host's own: the tenant had to copy the provider's
``dev-tee/root.crt`` by hand. Now the provider's control plane serves its root (``/tee-root``),
``reef deploy --root provider`` takes it on the provider's word (loudly INSECURE) and stores it
in the tenant's home as ``provider-0x<address>``, which later commands take as ``--root``; a
root that cannot verify the provider's enclaves is refused before anything is paid.

Each test runs a provider of two homes' worth: the provider's home (its dev TEE authority signs
its enclaves' attestations) and the tenant's (this test's ``$REEF_HOME``), on one devnet with a
control plane that reports one running enclave (``ScriptedJobView``) and an image store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from typer.testing import CliRunner

from net_support import serve_in_thread
from reef.attestation import DevAuthority, TrustedRoot, attestation_app
from reef.chain import serve_devnet_in_thread
from reef.cli import app
from reef.enclave import attested_measurements, build_image
from reef.errors import ConfigError, InputError, ServiceError
from reef.home import ReefHome
from reef.market import (
    ControlPlaneClient,
    ImageStore,
    RunningEnclave,
    UploadPolicy,
    control_plane_app,
    image_store_app,
    job_user_data,
)
from reef.testing import DevMarket, ScriptedJobView, dev_market, wall_ms

REPO = Path(__file__).resolve().parents[2]
FIRST_JOB = "0x" + "00" * 32  # the id of a new market's first job

runner = CliRunner()


@dataclass
class Provider:
    """A provider on another home than the tenant's, as a tenant reaches it: by flags."""

    market: DevMarket
    authority: DevAuthority
    image: Path
    flags: list[str]

    @property
    def address(self) -> str:
        return self.market.provider.address

    def deploy(self, *args: str) -> Any:
        return runner.invoke(
            app,
            ["deploy", str(self.image), "--duration", "1h", "--timeout", "20", *args, *self.flags],
            env={"COLUMNS": "250"},
        )

    def balance(self) -> int:
        owner = self.market.owner
        return owner.token().balance(owner.sender)


def _authority(path: Path) -> DevAuthority:
    return DevAuthority.load_or_create(ReefHome(path))


@contextmanager
def provider(
    tmp_path: Path, *, serves: bytes | str | None = "own", signs: DevAuthority | None = None
) -> Iterator[Provider]:
    """The provider of ``tmp_path/provider-home``: its control plane serves ``serves`` at
    ``/tee-root`` (its own dev root by default; ``None``: none; bytes: those, as the answer's
    certificate) and its one enclave attests under ``signs`` (its own authority by default)."""
    own = _authority(tmp_path / "provider-home")
    image = tmp_path / "hello.img"
    build_image(REPO / "examples" / "hello", image)
    market = dev_market(fund=[0])
    bound = job_user_data(31337, market.deployment.market, FIRST_JOB)
    attester = (signs or own).attester(dict(attested_measurements(image).pcrs), clock_ms=wall_ms)
    view = ScriptedJobView(market.provider.address.lower())
    with ExitStack() as stack:
        enclave = stack.enter_context(
            serve_in_thread(attestation_app(attester, public_key=b"\x07" * 32, user_data=bound))
        )
        view.enclaves[FIRST_JOB] = RunningEnclave(
            enclave_id="e1", job_id=FIRST_JOB, key="k", state="running",
            endpoints={"attestation": enclave},
        )  # fmt: skip
        if serves == "own":
            cp = control_plane_app(view, tee_root=own.root)
        elif serves is None:
            cp = control_plane_app(view)
        else:
            cp = _serving(control_plane_app(view), serves)
        market.register_provider(stack.enter_context(serve_in_thread(cp)))
        store = image_store_app(ImageStore(tmp_path / "store"), uploads=UploadPolicy.anyone())
        store_url = stack.enter_context(serve_in_thread(store))
        rpc = stack.enter_context(serve_devnet_in_thread(market.devnet))
        key = market.write_key(tmp_path / "tenant.key")
        flags = ["--rpc", rpc.url, "--market", market.deployment.market, "--key", str(key)]
        where = ["--store", store_url, "--provider", market.provider.address]
        yield Provider(market, own, image, [*flags, *where])


def _serving(cp: Any, certificate: bytes | str) -> Starlette:
    """``cp`` with a ``/tee-root`` that answers ``certificate`` (bytes: base64 of them)."""
    text = certificate if isinstance(certificate, str) else base64.b64encode(certificate).decode()

    async def tee_root(_: Any) -> JSONResponse:
        return JSONResponse({"certificate": text, "name": "dev", "insecure": True})

    return Starlette(routes=[Route("/tee-root", tee_root), Mount("/", cp)])


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_tenant_verifies_the_providers_enclave_with_the_root_it_serves(
    tmp_path: Path, home: ReefHome
) -> None:
    with provider(tmp_path) as p:
        name = f"provider-{p.address.lower()}"
        # The tenant's home has no dev root: --root dev (the default) cannot verify anything.
        plain = p.deploy()
        assert plain.exit_code == 1, plain.output
        assert "--root provider" in _one_line(plain.stderr)
        assert p.market.owner.find_job(FIRST_JOB) is None  # refused before paying

        done = p.deploy("--root", "provider")
        assert done.exit_code == 0, done.output
        said = _one_line(done.stderr)
        root = p.authority.root
        assert f"key id {root.key_id}" in said
        assert "INSECURE" in said
        assert "proves nothing against the provider" in said
        assert "--root aws" in said
        assert f"--root {name}" in said
        shown = _one_line(done.stdout)
        assert f"verified live, root {name}" in shown

        # Stored in the tenant's home, under the provider's address: the provider's root.
        stored = TrustedRoot.stored(home, name)
        assert stored is not None
        assert stored.certificate == root.certificate
        assert stored.insecure
        record = json.loads(TrustedRoot.stored_at(home, name).read_text())
        assert record["provider"] == p.address
        assert record["market"] == p.market.deployment.market
        assert record["chain_id"] == 31337

        # Later commands name it: verifying the enclave again, showing the root.
        enclave = _attestation_url(p)
        again = runner.invoke(app, ["verify", enclave, "--root", name])
        assert again.exit_code == 0, again.output
        assert "INSECURE" in again.stderr
        assert f"provider {p.address}'s own dev TEE root" in _one_line(again.stderr)
        shown_root = runner.invoke(app, ["attestation", "root", name, "--json"])
        assert shown_root.exit_code == 0, shown_root.output
        described = json.loads(shown_root.stdout)
        assert (described["insecure"], described["provider"]) == (True, p.address)
        assert described["key_id"] == root.key_id

        # A second deploy uses the stored root, and says so without the first-use warning.
        second = p.deploy("--root", "provider", "--timeout", "1")
        assert f"root {name}: provider" in _one_line(second.stderr)
        assert "taking provider" not in second.stderr


def _attestation_url(p: Provider) -> str:
    """The attestation URL the provider reports for the first job's enclave."""
    found = p.market.owner.provider(p.address)
    assert found is not None
    answer = ControlPlaneClient(found).ip(FIRST_JOB)
    assert answer is not None
    return str(answer["endpoints"]["attestation"])


def test_an_enclave_under_another_root_than_the_served_one_is_refused(tmp_path: Path) -> None:
    # The provider says one root, its enclave chains to another: verification refuses it (the
    # job is then open, and the hint says how to stop it).
    impostor = _authority(tmp_path / "impostor-home")
    with provider(tmp_path, signs=impostor) as p:
        done = p.deploy("--root", "provider")
    assert done.exit_code == 1, done.output
    said = _one_line(done.stderr)
    assert "failed verification" in said
    assert f"key {impostor.root.key_id}" in said
    assert "do not trust it" in said
    assert "reef jobs stop 0 --rpc" in said


def test_a_root_that_changed_since_it_was_stored_is_refused_before_paying(
    tmp_path: Path, home: ReefHome
) -> None:
    with provider(tmp_path) as p:
        name = f"provider-{p.address.lower()}"
        # The tenant stored another root for this address (the provider's home was recreated,
        # or someone else answers at its control plane now).
        other = _authority(tmp_path / "earlier-home").root
        TrustedRoot.served(other.certificate, provider=p.address).store(home, origin={})
        before = p.balance()
        done = p.deploy("--root", "provider")
        assert done.exit_code == 1, done.output
        said = _one_line(done.stderr)
        assert "now serves another dev TEE root" in said
        assert f"key id {p.authority.root.key_id}" in said
        assert f"key id {other.key_id}" in said
        assert "nothing was paid" in said
        assert str(TrustedRoot.stored_at(home, name)) in said
        assert p.balance() == before
        assert p.market.owner.find_job(FIRST_JOB) is None


def test_a_root_the_tenant_names_that_cannot_verify_the_provider_is_refused_before_paying(
    tmp_path: Path, authority: DevAuthority
) -> None:
    # The tenant has a dev root of its own (it ran enclaves once): --root dev names it, not the
    # provider's; the enclave would fail verification once the job was paid.
    with provider(tmp_path) as p:
        before = p.balance()
        done = p.deploy("--root", "dev")
        assert done.exit_code == 1, done.output
        said = _one_line(done.stderr)
        assert f"key id {p.authority.root.key_id}" in said
        assert f"root 'dev' (key id {authority.root.key_id})" in said
        assert "nothing was paid" in said
        assert "--root provider" in said
        assert p.balance() == before


def _not_self_signed() -> bytes:
    """An EC CA certificate signed by another key than its own."""
    import datetime as dt

    key, signer = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "reef dev TEE root")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("served", "why"),
    [
        ("not base64!", "not base64"),
        (b"\x30\x03\x02\x01\x01", "not a DER X.509 certificate"),
        ("not self-signed", "is not self-signed"),
    ],
)
def test_a_tampered_root_is_refused_before_paying(
    tmp_path: Path, home: ReefHome, served: bytes | str, why: str
) -> None:
    certificate = _not_self_signed() if served == "not self-signed" else served
    with provider(tmp_path, serves=certificate) as p:
        before = p.balance()
        done = p.deploy("--root", "provider")
        assert done.exit_code == 1, done.output
        said = _one_line(done.stderr)
        assert "served a TEE root that is no root certificate" in said
        assert why in said
        assert p.balance() == before
        assert TrustedRoot.stored(home, f"provider-{p.address.lower()}") is None


def test_a_provider_that_serves_no_root_is_said_so(tmp_path: Path) -> None:
    with provider(tmp_path, serves=None) as p:
        done = p.deploy("--root", "provider")
        assert done.exit_code == 1, done.output
        said = _one_line(done.stderr)
        assert "serves no TEE root" in said
        assert "--root aws" in said
        # Without --root provider, a provider that serves none is not held against the tenant:
        # its enclave's own attestation decides (here, under the tenant's mock root: refused).
        mock = p.deploy("--root", "mock", "--timeout", "2")
        assert "failed verification" in _one_line(mock.stderr), mock.output


def test_stored_root_names_resolve_only_to_what_was_stored(home: ReefHome) -> None:
    address = "0x" + "ab" * 20
    name = TrustedRoot.provider_root_name(address)
    with pytest.raises(InputError, match="no stored root"):
        TrustedRoot.resolve(name, home)
    with pytest.raises(InputError, match="`reef deploy` pays"):
        TrustedRoot.resolve("provider", home)
    dev = _authority(home.root / "elsewhere").root
    TrustedRoot.served(dev.certificate, provider=address).store(home, origin={"market": "m"})
    assert TrustedRoot.resolve(name.upper().replace("0X", "0x"), home).certificate == (
        dev.certificate
    )
    # A stored file that names another provider than its name says is refused, not believed.
    path = TrustedRoot.stored_at(home, name)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "provider": "0x" + "cd" * 20}))
    with pytest.raises(ConfigError, match="not valid"):
        TrustedRoot.resolve(name, home)


def test_the_control_plane_client_reads_a_served_root_as_a_strangers() -> None:
    import httpx

    def answer(body: Any, status: int = 200) -> ControlPlaneClient:
        transport = httpx.MockTransport(lambda _: httpx.Response(status, json=body))
        return ControlPlaneClient("http://cp", transport=transport)

    address = "0x" + "ab" * 20
    assert answer({"error": "none"}, 404).tee_root(address) is None
    with pytest.raises(ServiceError, match="unexpected values"):
        answer({"certificate": "A" * 20_000}).tee_root(address)
    with pytest.raises(ServiceError, match="HTTP 500"):
        answer({"error": "x"}, 500).tee_root(address)
    aws = TrustedRoot.aws()
    served = answer({"certificate": base64.b64encode(aws.certificate).decode()}).tee_root(address)
    assert served == aws  # AWS's own root is AWS's, not the provider's word
    assert served is not None
    assert not served.insecure
