"""How likely a guesser is to open somebody's share by typing codes: the model behind
SECURITY.md's figure, printed by scripts/guessing_odds.py.

The guesser's best case: as many addresses as they like (so the per-address and per-network
limits never stop them), the site-wide threshold (PHR_SHARE_FAILURES_SITE_PER_HOUR) spent at
full speed every hour, and after it every web worker busy with nothing but their guesses, each
failed check held for the delay (PHR_SHARE_SLOWDOWN_SECONDS) on top of its own cost. Each guess
is a uniformly random code, and any of the live shares would do:

    p = 1 - exp(-G * S / 2**bits)

G guesses a year, S live shares, `bits` of a code. A PIN or a link only lowers it further
(a PIN multiplies the space by a million and locks the share after 10 wrong ones; a link token
has 256 bits), so the model leaves them out.
"""

import math
from dataclasses import dataclass, replace

from django.conf import settings

from phr.lib import codes

HOURS_PER_YEAR = 365.25 * 24


@dataclass(frozen=True)
class Model:
    live_shares: int
    code_bits: float
    threshold_per_hour: int
    delay_seconds: float
    workers: int
    # What one failed check costs the server without any delay (hash, lookups, the log row).
    check_seconds: float

    @classmethod
    def from_settings(cls, *, live_shares: int, workers: int = 64, check_seconds: float = 0.001):
        return cls(
            live_shares=live_shares,
            code_bits=codes.CODE_BITS,
            threshold_per_hour=settings.PHR_SHARE_FAILURES_SITE_PER_HOUR,
            delay_seconds=settings.PHR_SHARE_SLOWDOWN_SECONDS,
            workers=workers,
            check_seconds=check_seconds,
        )

    def guesses_per_second_past_the_threshold(self) -> float:
        return self.workers / (self.delay_seconds + self.check_seconds)

    def guesses_per_year(self) -> float:
        per_hour = self.threshold_per_hour + 3600 * self.guesses_per_second_past_the_threshold()
        return per_hour * HOURS_PER_YEAR

    def chance_in_a_year(self) -> float:
        return -math.expm1(-self.guesses_per_year() * self.live_shares / 2**self.code_bits)

    def without_delay(self) -> "Model":
        return replace(self, delay_seconds=0.0)
