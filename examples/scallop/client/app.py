"""A Scallop client enclave: calls the Scallop server enclave and reports what each side saw.

GET /call?port=P[&host=H][&image_id=HEX][&message=TEXT] opens a Scallop channel to H:P (by default
the host, ``$REEF_HOST_ADDR``, where other enclaves' ports are mapped), attests this enclave with
its X25519 identity, requires the server to attest under our own TEE root (and, with
``image_id``, to run that image), and POSTs ``message`` to /hello. Answers:

- 200 {"client_image_id", "server_image_id_seen", "server_answer"}: the server's image id as the
  verified channel reports it, and the server's answer (which names the image id it saw for us);
- 400 {"error": what}: ``port`` or ``image_id`` is missing or malformed;
- 403 {"refused": reason}: the server failed our policy; no request was sent.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reef.attestation import TrustedRoot
from reef.encoding import parse_hex
from reef.errors import ChannelError, InputError
from reef.scallop import PeerPolicy, ScallopTransport, auther_from_url

APP = Path(os.environ.get("REEF_APP_DIR", "/app"))
ATTESTATION = os.environ.get("REEF_ATTESTATION_URL", "http://127.0.0.1:1300") + "/attestation/raw"
PORT = int(os.environ.get("PORT", "8080"))


def own_tee_root() -> TrustedRoot:
    """The root our own attestations chain to: the TEE this enclave runs on (trusted anyway)."""
    return TrustedRoot.from_document(httpx.get(ATTESTATION, timeout=10).content)


async def call(request: Request) -> JSONResponse:
    params = request.query_params
    host = params.get("host") or os.environ.get("REEF_HOST_ADDR", "127.0.0.1")
    try:
        port = int(params.get("port", ""))
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        return JSONResponse({"error": "port must be a TCP port number (1-65535)"}, status_code=400)
    wanted = params.get("image_id")
    try:
        image_ids = [parse_hex(wanted, name="image_id", length=32)] if wanted else []
    except InputError as exc:
        return JSONResponse({"error": exc.message}, status_code=400)
    policy = PeerPolicy(roots=[request.app.state.root], image_ids=image_ids)
    transport = ScallopTransport(
        static_key=(APP / "id.sec").read_bytes(), policy=policy, auther=auther_from_url(ATTESTATION)
    )
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        try:
            answer = await client.post(
                f"http://{host}:{port}/hello", content=params.get("message", "hello").encode()
            )
        except ChannelError as exc:
            return JSONResponse({"refused": exc.message}, status_code=403)
    seen = answer.extensions["scallop"]
    return JSONResponse(
        {
            "client_image_id": os.environ.get("REEF_IMAGE_ID", ""),
            "server_image_id_seen": seen.image_id.hex() if seen.image_id else None,
            "server_answer": answer.json(),
        }
    )


app = Starlette(routes=[Route("/call", call)])

if __name__ == "__main__":
    app.state.root = own_tee_root()
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
