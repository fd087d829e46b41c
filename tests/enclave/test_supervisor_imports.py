"""What an enclave supervisor loads: reef._lazy's deferred imports, and the supervisor's lean set.

The supervisor's memory is mostly the code it imports (bench/enclave.py); these tests pin that the
trusted base still serves while what it never uses (uvicorn's command line, logging.config, the
email parser) stays out of the process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reef._lazy import defer_import, without_init


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path for throwaway packages; their modules are forgotten after."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _runs(root: Path) -> list[str]:
    log = root / "runs.log"
    return log.read_text().split() if log.exists() else []


def test_a_deferred_module_runs_once_when_first_used(packages: Path) -> None:
    log = packages / "runs.log"
    _write(
        packages,
        {
            "deferpkg/__init__.py": "",
            "deferpkg/heavy.py": f"""
                with open({str(log)!r}, "a") as out:
                    out.write("heavy\\n")
                VALUE = 42
                def double(x):
                    return 2 * x
            """,
        },
    )
    assert defer_import("deferpkg.heavy") is True
    assert defer_import("deferpkg.heavy") is False  # already registered
    import deferpkg.heavy  # type: ignore[import-not-found]  # noqa: F401  (as a library does)
    from deferpkg import heavy

    assert _runs(packages) == []
    assert heavy is sys.modules["deferpkg.heavy"]
    assert heavy.__name__ == "deferpkg.heavy"  # set without running its code
    assert _runs(packages) == []
    assert heavy.VALUE == 42  # the first name asked runs the module
    assert _runs(packages) == ["heavy"]
    from deferpkg.heavy import double

    assert double(4) == 8
    assert not hasattr(heavy, "missing")
    assert _runs(packages) == ["heavy"]


def test_defer_import_leaves_what_is_imported_or_absent(packages: Path) -> None:
    _write(packages, {"eager.py": "X = 1\n"})
    import eager  # type: ignore[import-not-found]

    assert defer_import("eager") is False
    assert sys.modules["eager"] is eager
    assert defer_import("no_such_module_anywhere") is False
    assert "no_such_module_anywhere" not in sys.modules


def test_without_init_skips_a_package_init(packages: Path) -> None:
    log = packages / "runs.log"
    _write(
        packages,
        {
            "bare/__init__.py": f"""
                with open({str(log)!r}, "a") as out:
                    out.write("init\\n")
                from bare.part import Thing
            """,
            "bare/part.py": f"""
                with open({str(log)!r}, "a") as out:
                    out.write("part\\n")
                class Thing:
                    pass
            """,
        },
    )
    assert without_init("bare", {"Thing": "part"}) is True
    assert without_init("bare", {"Thing": "part"}) is False
    import bare  # type: ignore[import-not-found]
    import bare.part  # type: ignore[import-not-found]

    assert _runs(packages) == ["part"]
    assert bare.Thing is bare.part.Thing  # the package's names load from their submodule
    from bare import Thing

    assert Thing is bare.part.Thing
    with pytest.raises(AttributeError):
        _ = bare.Other
    assert _runs(packages) == ["part"]  # its __init__ never ran
    assert without_init("json", {}) is False  # imported already
    assert without_init("no_such_package_anywhere", {}) is False


# What `python -m reef.enclave.local._supervisor` does before its first import of asyncio.
AS_SUPERVISOR = """
import sys
sys.modules.setdefault("ssl", None)
sys.modules.setdefault("_hashlib", None)
"""

SERVE_ONE = (
    AS_SUPERVISOR
    + """
import asyncio, sys
from reef.enclave.local._supervisor import _lean_imports, _load_trusted_base
_lean_imports()
_load_trusted_base()
from reef._listen import bind
from reef._serve import Server
from reef.enclave.local._trusted_base import dev_unseal, sealing_app

KEY, IMAGE = bytes(range(32)), bytes(32)

async def main():
    sock = bind("127.0.0.1", 0, what="sealing")
    server = await Server(sealing_app(KEY, IMAGE), sock, what="sealing", uvicorn_logging=False).start()
    try:
        for path in ("/seal", "/nothing"):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(
                f"POST {path} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 5\\r\\n"
                "Connection: close\\r\\n\\r\\nhello".encode()
            )
            answer = await reader.read()
            writer.close()
            head, _, body = answer.partition(b"\\r\\n\\r\\n")
            print(head.split(b"\\r\\n")[0].decode())
            if path == "/seal":
                assert dev_unseal(KEY, IMAGE, body) == b"hello"
                print(" ".join(sorted(n for n, m in sys.modules.items() if m is not None)))
            else:
                print(body.decode())
                print("_ssl" in sys.modules)
    finally:
        await server.aclose()

asyncio.run(main())
"""
)


def test_the_trusted_base_serves_without_what_it_never_uses() -> None:
    """The supervisor's preparations (uvicorn without its package init, deferred modules, ssl
    blocked for asyncio and deferred after) keep uvicorn's command line, logging.config, email's
    parser and ssl's C module out, and its servers still serve (a seal; then a 404 through
    Starlette's HTTPException, which loads http.client on use)."""
    out = subprocess.run(
        [sys.executable, "-c", SERVE_ONE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0] == "HTTP/1.1 200 OK"
    # A 404 without a detail names its status from http.client, deferred until then.
    assert out[2:4] == ["HTTP/1.1 404 Not Found", '{"error":"Not Found"}']
    assert out[4] == "False"  # ssl's C module stayed out, also after http.client loaded
    loaded = set(out[1].split())
    assert {"reef._serve", "uvicorn.server", "starlette.applications"} <= loaded
    for module in (
        "click",
        "uvicorn.main",
        "uvicorn.supervisors",
        "multiprocessing",
        "logging.handlers",
        "pickle",
        "email.parser",
        "html.entities",
        "pydantic",
        "fastapi",
        "httpx",
        "_ssl",
        "_hashlib",
    ):
        assert module not in loaded, module


FETCH_SEED = (
    AS_SUPERVISOR
    + """
import asyncio, json, sys
from pathlib import Path
from reef.enclave.local._supervisor import _lean_imports, _load_trusted_base
_lean_imports()
_load_trusted_base()
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from reef._clock import wall_clock_ms
from reef.attestation import DevAuthority
from reef.home import ReefHome
from reef.kms import KmsWiring, derive_secret, derive_server_app, fetch_enclave_seed

home, wiring = ReefHome(Path(sys.argv[1])), KmsWiring.from_json(json.loads(sys.argv[2]))
attester = DevAuthority.load_or_create(home).attester(PCRS, clock_ms=wall_clock_ms)
private = X25519PrivateKey.generate()
public = private.public_key().public_bytes_raw()

async def auther():
    return attester(public_key=public, user_data=b"", nonce=b"")

async def main():
    seed, version = await fetch_enclave_seed(
        wiring, static_key=private.private_bytes_raw(), auther=auther
    )
    derive_secret(seed, "p", "secp256k1")
    print(seed.hex(), version)
    print(" ".join(sorted(n for n, m in sys.modules.items() if m is not None)))

asyncio.run(main())
"""
)

APP_PCRS = {0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48}


async def test_a_supervisor_fetches_its_kms_seed_without_an_http_client(tmp_path: Path) -> None:
    """With a KMS, the supervisor fetches its seed over Scallop (a real root here) and derives
    secrets without httpx, h11 or the email parser (reef.scallop's package init, skipped), nor
    reef.crypto's secp256k1 and hash modules and their coincurve, pysha3 and base58: of
    reef.crypto, only its lazy facade, the pure-Python scalar rules a secret needs and the
    X25519 module (on cryptography, which the trusted base loads anyway) that makes the boot's
    identity key."""
    import json

    from kms.kms_support import dev_root_server, dev_root_store
    from reef._clock import wall_clock_ms
    from reef.attestation import DevAuthority, image_id
    from reef.home import ReefHome
    from reef.kms import KmsRoot

    home = ReefHome(tmp_path / "home").ensure()
    authority = DevAuthority.load_or_create(home)
    root_pcrs = {0: b"\x0a" * 48, 1: b"\x0b" * 48, 2: b"\x0c" * 48}
    store = dev_root_store(home, authority, root_pcrs)
    root = KmsRoot.open(store, attester=authority.attester(root_pcrs, clock_ms=wall_clock_ms))
    code = FETCH_SEED.replace("PCRS", repr(APP_PCRS))
    async with dev_root_server(root, authority) as server:
        wiring = json.dumps(server.wiring().to_json())
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, str(home.root), wiring,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == f"{root.keyring.enclave_seed(image_id(APP_PCRS)).hex()} 0"
    loaded = set(lines[1].split())
    assert {"reef.kms._derive_server", "reef.scallop._handshake", "httptools"} <= loaded
    assert {m for m in loaded if m.startswith("reef.crypto")} <= {
        "reef.crypto",
        "reef.crypto._curve25519",
        "reef.crypto._scalars",
    }
    for module in (
        *("httpx", "h11", "idna", "email.parser", "_ssl", "_hashlib"),
        *("reef.crypto._secp256k1", "reef.crypto._hashes"),
        *("coincurve", "sha3", "base58", "nacl"),
    ):
        assert module not in loaded, module


def test_what_a_supervisor_presets_of_ssl_is_ssl() -> None:
    """The names uvicorn.config and anyio read from ssl while it is deferred hold ssl's values
    (the class excepted: no instance of it can exist before ssl loads)."""
    import ssl

    from reef.enclave.local._supervisor import _SSL_NAMES

    assert _SSL_NAMES["PROTOCOL_TLS_SERVER"] == ssl.PROTOCOL_TLS_SERVER
    assert _SSL_NAMES["CERT_NONE"] == ssl.CERT_NONE
    assert set(_SSL_NAMES) == {"PROTOCOL_TLS_SERVER", "CERT_NONE", "SSLContext"}


def test_from_a_deferred_module_import_a_preset_name_runs_nothing(packages: Path) -> None:
    """`from name import x` asks the module for x, not for its code: a name set on the deferred
    module answers without running it (the import system's __path__ probe does not load it)."""
    log = packages / "runs.log"
    _write(packages, {"preset.py": f"""
        with open({str(log)!r}, "a") as out:
            out.write("preset\\n")
        X = "real"
        Y = 2
    """})  # fmt: skip
    assert defer_import("preset") is True
    sys.modules["preset"].X = "stand-in"
    from preset import X  # type: ignore[import-not-found]

    assert X == "stand-in"
    assert _runs(packages) == []
    from preset import Y

    assert Y == 2
    assert _runs(packages) == ["preset"]
    assert sys.modules["preset"].X == "real"  # its code, once run, sets its own names


def test_the_supervisor_knows_every_name_of_reef_scallop() -> None:
    """The supervisor registers reef.scallop without its package init: each name the package
    exports must load from the submodule its table gives."""
    import importlib

    import reef.scallop
    from reef.enclave.local._supervisor import _SCALLOP_NAMES

    assert set(_SCALLOP_NAMES) == set(reef.scallop.__all__)
    for name, module in _SCALLOP_NAMES.items():
        defined = getattr(importlib.import_module(f"reef.scallop.{module}"), name)
        assert defined is getattr(reef.scallop, name), name
