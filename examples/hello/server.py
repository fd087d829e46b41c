"""Hello-world enclave app (standard library only).

GET /             -> {"greeting", "x25519_public_key", "secp256k1_public_key", "image_id"}
GET /attestation  -> the enclave's attestation document for its X25519 key (raw bytes)

The keys are the per-boot identity keys the trusted base gives every enclave (/app/id.pub,
/app/ecdsa.pub, as on Oyster); the attestation server on 127.0.0.1:1300 attests the same X25519
key, so a client can check that the key it talks to belongs to this image.
"""

from __future__ import annotations

import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

APP = Path(os.environ.get("REEF_APP_DIR", "/app"))
ATTESTATION = os.environ.get("REEF_ATTESTATION_URL", "http://127.0.0.1:1300")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            body = json.dumps(
                {
                    "greeting": os.environ.get("GREETING", "hello"),
                    "x25519_public_key": (APP / "id.pub").read_bytes().hex(),
                    "secp256k1_public_key": (APP / "ecdsa.pub").read_bytes().hex(),
                    "image_id": os.environ.get("REEF_IMAGE_ID", ""),
                }
            ).encode()
            self._send(200, "application/json", body)
        elif self.path == "/attestation":
            url = ATTESTATION + "/attestation/raw"  # the enclave-local attestation server
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
                self._send(200, "application/octet-stream", answer.read())
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"hello: listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()
