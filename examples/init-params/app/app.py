"""An app configured by init params (standard library only).

GET / -> {"greeting", "config", "secret_sha256", "digest"}

Init params arrive as files under /init-params/ (Oyster's layout), decoded and checked against
their digest by the trusted base before the app starts; /app/init-params-digest is the digest the
enclave measured into PCR16. Secret params (sealed to the enclave's KMS key) are opened by the
trusted base too; this app only shows a hash of one, never the secret.
"""

from __future__ import annotations

import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PARAMS = Path(os.environ.get("REEF_INIT_PARAMS_DIR", "/init-params"))
APP = Path(os.environ.get("REEF_APP_DIR", "/app"))


def read(name: str) -> bytes | None:
    path = PARAMS / name
    return path.read_bytes() if path.is_file() else None


def state() -> dict[str, object]:
    greeting = read("greeting.txt")
    config = read("config.json")
    secret = read("api-key")
    digest = APP / "init-params-digest"
    return {
        "greeting": greeting.decode().strip() if greeting else None,
        "config": json.loads(config) if config else None,
        "secret_sha256": hashlib.sha256(secret).hexdigest() if secret else None,
        "digest": digest.read_bytes().hex() if digest.exists() else None,
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(state()).encode()
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print(json.dumps(state()), flush=True)
    ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
