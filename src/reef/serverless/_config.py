"""The workerd configuration of one runtime process: one function, no network, a capped heap.

Pure text generation. The config is workerd's native Cap'n Proto text format (its wrangler.json
front end has no place for V8 flags or an outbound network policy). The shape follows Oyster's
executor (one service ``main`` with one ES module, compatibility date 2023-03-07, so a function
behaves the same on both networks), plus what Oyster leaves out: ``globalOutbound`` points at a
network service that allows only what the operator allows, and ``--max-old-space-size`` caps
V8's heap. With nothing allowed (the default) it points at a worker of reef's that refuses every
``fetch()`` and ``connect()`` ("connecting to … is not allowed") without touching the network: a
network service with an empty allow list still looks every host name up before it refuses the
address, and a DNS query for ``<data>.<the author's domain>`` carries data out. The HTTP
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


# The outbound service of a function with no network: it answers every request the function
# makes with an error, and so never resolves a name; it has no connect() handler, so a socket
# the function opens fails as well (its own outbound is a network service that allows nothing;
# it makes no request of its own).
_DENY_MODULE = (
    "const refuse = (target) => { throw new Error(`connecting to ${target} is not allowed: "
    "this function has no network`); };"
    " export default { fetch(request) { refuse(new URL(request.url).host); } };"
)


def render_config(*, heap_mib: int, allow_network: tuple[str, ...] = ()) -> str:
    """The ``config.capnp`` text for a runtime that serves ``function.js`` beside it.

    Args:
        heap_mib: V8's old-space ceiling in MiB (exhausting it aborts workerd: code 6).
        allow_network: workerd network-service allow patterns for ``fetch()``; empty denies all.
    """
    allow = ", ".join(_string(pattern) for pattern in allow_network)
    if allow_network:
        egress = f'(name = "egress", network = (allow = [{allow}], deny = [])),'
    else:
        egress = f"""(name = "egress", worker = (
      modules = [(name = "deny.js", esModule = {_string(_DENY_MODULE)})],
      compatibilityDate = {_string(COMPATIBILITY_DATE)},
      globalOutbound = "nowhere",
    )),
    (name = "nowhere", network = (allow = [], deny = [])),"""
    return f"""using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [(name = {_string(MODULE_NAME)}, esModule = embed {_string(MODULE_NAME)})],
      compatibilityDate = {_string(COMPATIBILITY_DATE)},
      globalOutbound = "egress",
    )),
    {egress}
  ],
  sockets = [(name = {_string(SOCKET_NAME)}, http = (), service = "main")],
  v8Flags = ["--max-old-space-size={int(heap_mib)}"],
);
"""
