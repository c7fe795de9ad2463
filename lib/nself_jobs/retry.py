"""Retry timing: how long a failed attempt waits before the next one.

``maxRetries`` counts retries, not attempts: a job runs at most
``maxRetries + 1`` times. The wait before retry k (k = 1 for the first retry) is

    exponential: base * 2 ** (k - 1), at most the cap
    fixed:       base, at most the cap

minus a random jitter of up to 20%, so jobs that failed together do not all
retry in the same instant. For example, base 5000 ms gives about 5 s, 10 s,
20 s, 40 s. The result is always an integer from 0 to the cap, for any k.
"""

import random

JITTER_FRACTION = 0.2


def backoff_ms(retry_number, base_ms, kind="exponential", cap_ms=3_600_000, rand=random.random):
    """Return the wait in ms before retry ``retry_number`` (1-based)."""
    base_ms = max(0, int(base_ms))
    cap_ms = max(0, int(cap_ms))
    if kind == "fixed":
        delay = min(base_ms, cap_ms)
    else:
        exponent = min(max(retry_number - 1, 0), 62)
        delay = cap_ms if base_ms and exponent >= 62 else min(cap_ms, base_ms * (1 << exponent))
    jitter = delay * JITTER_FRACTION * rand()
    return max(0, int(delay - jitter))
