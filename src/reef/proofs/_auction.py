"""The reverse Dutch auction's price curve (pure): what ``ProofMarket.vy``'s ``auctionPrice`` gives.

An auction ask (Boundless's mechanism, issue 16's "mechanism agnostic … auctions") escrows its
maximum price as the reward; its price starts at the minimum when the ask is created and rises
linearly to the maximum at ``ramp_end``, then stays there until the ask expires. The first
joined prover to ``lock`` it takes it at the price of that block, putting up the market's
penalty of its stake as collateral; a proof pays that price and refunds the rest. A prover
therefore locks as soon as the price reaches its own quote: waiting longer earns more only if
no cheaper prover locks first.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AuctionTerms", "auction_price"]


def auction_price(min_price: int, max_price: int, start: int, ramp_end: int, now: int) -> int:
    """The price at chain time ``now``, rounded down exactly as the contract rounds it."""
    if now >= ramp_end:
        return max_price
    if now <= start:
        return min_price
    return min_price + (max_price - min_price) * (now - start) // (ramp_end - start)


@dataclass(frozen=True)
class AuctionTerms:
    """An auction ask's price curve (from its ``AuctionCreated`` event)."""

    ask_id: int
    market_id: int
    min_price: int
    max_price: int
    start: int
    ramp_end: int

    def price(self, now: int) -> int:
        return auction_price(self.min_price, self.max_price, self.start, self.ramp_end, now)

    def reaches(self, price: int) -> int:
        """The first chain time at which the price is at least ``price`` (``ramp_end`` at the
        latest; never, as ``ramp_end + 1``, above the maximum)."""
        if price > self.max_price:
            return self.ramp_end + 1
        if price <= self.min_price:
            return self.start
        span, rise = self.ramp_end - self.start, self.max_price - self.min_price
        # smallest t with min + rise * t // span >= price, i.e. rise * t >= (price - min) * span
        return self.start + -(-(price - self.min_price) * span // rise)
