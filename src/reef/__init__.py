"""reef: a verifiable-compute platform.

Rent confidential compute in TEE enclaves, prove to anyone which code runs there, give that code
keys only it can derive, connect enclaves over attested channels, and pay for it all per second
on an EVM chain. See README.md for the tour and DESIGN.md for the architecture.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
