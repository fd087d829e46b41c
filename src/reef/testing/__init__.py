"""Public test helpers: fakes and conformance suites for what reef's packages promise.

- :func:`dev_market`, :class:`DevMarket`: reef's contracts on a devnet with dev account 9
  registered as the provider, the set-up most market, node and dashboard tests start from;
  :func:`dev_job_metadata`: a job's metadata for the local dev TEE;
- :class:`FakeBackend`: an in-memory :class:`reef.enclave.EnclaveBackend` (images measured for
  real, nothing runs) for tests of the market, the node and the CLI;
- :func:`check_backend`: the conformance suite every enclave backend passes;
- :class:`FakeRunner`: the control plane's enclave runner, running nothing and remembering what
  it was asked, for tests of the provider's decisions;
- :class:`ManualClock`, :class:`ManualWallClock`, :func:`wall_ms`: clocks as parameters;
- :class:`MarketModel`: the market contract as a state machine, for stateful tests against it;
- :class:`ScriptedJobView`: a provider's jobs as a test sets them, for the control plane's API.

Nothing here is imported by reef itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes
from reef.testing._clock import ManualClock, ManualWallClock, wall_ms

if TYPE_CHECKING:
    from reef.testing._backend_conformance import check_backend
    from reef.testing._dev_market import DevMarket, dev_job_metadata, dev_market
    from reef.testing._fake_backend import FakeBackend
    from reef.testing._fake_runner import FakeRunner
    from reef.testing._job_view import ScriptedJobView
    from reef.testing._market_model import MarketModel

__all__ = [
    "DevMarket",
    "FakeBackend",
    "FakeRunner",
    "ManualClock",
    "ManualWallClock",
    "MarketModel",
    "ScriptedJobView",
    "check_backend",
    "dev_job_metadata",
    "dev_market",
    "wall_ms",
]

# Loaded on first use (reef._lazy): a test that wants a clock need not import the market model's
# web3 and eth-abi, the devnet's py-evm, nor the enclave package (several seconds on a loaded
# machine).
__getattr__ = lazy_attributes(
    __name__,
    {
        "check_backend": "_backend_conformance",
        "DevMarket": "_dev_market",
        "dev_job_metadata": "_dev_market",
        "dev_market": "_dev_market",
        "FakeBackend": "_fake_backend",
        "FakeRunner": "_fake_runner",
        "MarketModel": "_market_model",
        "ScriptedJobView": "_job_view",
    },
)
