"""Exponential backoff with jitter: the one formula every reconnect and retry uses."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    min_s: float,
    max_s: float,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry `attempt` (0-based): exponential, capped, jittered.

    The un-jittered delay is `min(max_s, min_s * 2**attempt)`; jitter scales it by a uniform
    factor in `[1 - jitter, 1]`, so the cap is never exceeded and peers that failed together do
    not retry in lock-step. `rng` defaults to the module's shared generator.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if not 0 < min_s <= max_s:
        raise ValueError(f"need 0 < min_s <= max_s, got min_s={min_s}, max_s={max_s}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be in [0, 1], got {jitter}")
    # 2**attempt overflows a float near attempt 1024; the cap is reached long before.
    base = max_s if attempt >= 64 else min(max_s, min_s * (2.0**attempt))
    if jitter == 0:
        return base
    return base * (1.0 - jitter * (rng or random).random())
