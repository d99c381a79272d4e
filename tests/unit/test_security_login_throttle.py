"""The per-address log-in throttle, without HTTP: a sliding window of failures per address."""

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from kizuna.security.domain import LoginThrottle

WINDOW = timedelta(seconds=100)


def test_an_address_is_refused_at_the_limit_and_admitted_again_as_failures_age():
    throttle = LoginThrottle(limit=3, window=WINDOW)
    for at in (0.0, 10.0, 20.0):
        assert throttle.retry_after("a", at) == 0
        throttle.failed("a", at)

    assert throttle.retry_after("a", 30.0) == 70.0  # until the failure at 0 leaves the window
    assert throttle.retry_after("b", 30.0) == 0  # other addresses are not affected
    assert throttle.retry_after("a", 100.0) == 0


@given(
    st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=40),
    st.integers(min_value=1, max_value=6),
    st.floats(min_value=0, max_value=1200, allow_nan=False),
)
def test_refused_exactly_when_the_window_holds_the_limit_and_the_wait_ends_it(times, limit, later):
    throttle = LoginThrottle(limit=limit, window=WINDOW)
    times = sorted(times)
    for at in times:
        throttle.failed("a", at)
    now = max([*times, later])
    window = WINDOW.total_seconds()
    recent = [at for at in times if at > now - window]

    wait = throttle.retry_after("a", now)

    assert (wait > 0) == (len(recent) >= limit)
    if wait > 0:
        # Still refused half-way; admitted once the wait is over (a micro-second for float sums).
        assert throttle.retry_after("a", now + wait / 2) > 0
        assert throttle.retry_after("a", now + wait + 1e-6) == 0


def test_memory_stays_bounded_under_a_flood_of_addresses():
    throttle = LoginThrottle(limit=5, window=WINDOW, max_addresses=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}", float(n) / 100)

    assert len(throttle._failures) <= 100
