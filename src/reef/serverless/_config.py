"""The workerd configuration of one runtime process: one function, no network, a capped heap.

Pure text generation. The config is workerd's native Cap'n Proto text format (its wrangler.json
front end has no place for V8 flags or an outbound network policy). The shape follows Oyster's
executor (one service ``main`` with one ES module, compatibility date 2023-03-07, so a function
behaves the same on both networks), plus what Oyster leaves out: ``globalOutbound`` points at a
network service whose allow list is empty unless the operator allows more (``fetch()`` then fails
with "connecting to … is not allowed"), and ``--max-old-space-size`` caps V8's heap. The HTTP
socket has no address: reef binds a Unix socket and hands workerd its descriptor
(``--socket-fd http=N``), so no TCP port is exposed to other local users and none can collide.
"""

from __future__ import annotations

__all__ = ["COMPATIBILITY_DATE", "MODULE_NAME", "SOCKET_NAME", "render_config"]

COMPATIBILITY_DATE = "2023-03-07"
"""Oyster's executor pins the same date: Workers APIs behave the same on both networks."""
MODULE_NAME = "function.js"
"""The file name of the function's module (it appears in syntax-error messages)."""
SOCKET_NAME = "http"


def _string(text: str) -> str:
    # Cap'n Proto text strings use C-style escapes; the inputs are validated patterns, but escape
    # anyway so a config can never be broken out of.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(*, heap_mib: int, allow_network: tuple[str, ...] = ()) -> str:
    """The ``config.capnp`` text for a runtime that serves ``function.js`` beside it.

    Args:
        heap_mib: V8's old-space ceiling in MiB (exhausting it aborts workerd: code 6).
        allow_network: workerd network-service allow patterns for ``fetch()``; empty denies all.
    """
    allow = ", ".join(_string(pattern) for pattern in allow_network)
    return f"""using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [(name = {_string(MODULE_NAME)}, esModule = embed {_string(MODULE_NAME)})],
      compatibilityDate = {_string(COMPATIBILITY_DATE)},
      globalOutbound = "egress",
    )),
    (name = "egress", network = (allow = [{allow}], deny = [])),
  ],
  sockets = [(name = {_string(SOCKET_NAME)}, http = (), service = "main")],
  v8Flags = ["--max-old-space-size={int(heap_mib)}"],
);
"""
