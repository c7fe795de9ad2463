from nself_jobs.retry import backoff_ms


def no_jitter():
    return 0.0


def test_exponential_doubles_from_base():
    assert [backoff_ms(k, 5000, rand=no_jitter) for k in (1, 2, 3, 4)] == [5000, 10000, 20000, 40000]


def test_fixed_stays_at_base():
    assert [backoff_ms(k, 5000, "fixed", rand=no_jitter) for k in (1, 5, 50)] == [5000, 5000, 5000]


def test_cap_applies():
    assert backoff_ms(30, 5000, cap_ms=60_000, rand=no_jitter) == 60_000


def test_huge_attempt_numbers_never_overflow_or_go_negative():
    for attempt in (0, -5, 63, 64, 1000, 10**9):
        value = backoff_ms(attempt, 5000, cap_ms=3_600_000, rand=lambda: 0.999)
        assert 0 <= value <= 3_600_000


def test_jitter_takes_at_most_a_fifth():
    assert backoff_ms(1, 10_000, rand=lambda: 1.0) == 8000


def test_zero_base_means_no_wait():
    assert backoff_ms(5, 0, rand=no_jitter) == 0
