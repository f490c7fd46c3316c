"""Scheduler ticks over time, on real Redis: the loop of ``parcelhook scheduler`` (one ``tick``
about every second, a little more when a tick has work) is replayed with explicit clocks.

* a single scheduler claims every slot of every job, whatever its loop's period and phase;
* when the active one of two dies, the standby claims the next slot within one cadence (plus
  one loop period), whatever the two schedulers' phases — not up to two cadences later, which
  is longer than the tick key's expiry.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import System

EVERY = 30  # the health check's cadence (CADENCE_S["alerts"]): the shortest, so the most ticks
BASE = 1_200_000.0  # a slot boundary of every cadence (a multiple of 600)


def _claims(system: System, start: float, period: float, until: float, last: dict[str, int]) -> list[float]:
    """When one scheduler's loop (first tick at ``start``, then every ``period`` s) claimed the
    health check's slot, up to ``until``."""
    from workers.clock import tick

    claimed, now = [], start
    while now < until:
        if "alerts" in tick(system.broker.client, now, last):
            claimed.append(now)
        now += period
    return claimed


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    period=st.floats(min_value=1.0, max_value=1.5),
    phase=st.floats(min_value=0.0, max_value=EVERY, exclude_max=True),
)
@example(period=1.1, phase=29.0)  # a loop 10 % slower than a second, started late in a slot
def test_a_single_scheduler_claims_every_slot(system: System, period: float, phase: float) -> None:
    system.broker.client.flushdb()
    start, until = BASE + phase, BASE + phase + 12 * EVERY
    claimed = _claims(system, start, period, until, {})
    ticks, now = [], start
    while now < until:  # the same clock readings as the loop's
        ticks.append(now)
        now += period
    in_window = sorted({int(t // EVERY) for t in ticks})
    assert [int(t // EVERY) for t in claimed] == in_window


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(standby_phase=st.floats(min_value=0.0, max_value=EVERY, exclude_max=True))
@example(standby_phase=29.5)  # the standby ticks just before each slot ends: the active one wins
def test_a_standby_claims_the_next_slot_within_one_cadence(system: System, standby_phase: float) -> None:
    from workers.clock import tick

    client = system.broker.client
    client.flushdb()
    active: dict[str, int] = {}
    standby: dict[str, int] = {}
    # both loops tick once a second, the standby `standby_phase` s after the active one; the
    # active one dies just after the start of the third slot
    died_at = BASE + 2 * EVERY + 0.1
    at_active, at_standby = BASE, BASE + standby_phase
    while min(at_active, at_standby) < died_at:
        if at_active <= at_standby:
            tick(client, at_active, active)
            at_active += 1.0
        else:
            tick(client, at_standby, standby)
            at_standby += 1.0
    takeover = _claims(system, at_standby, 1.0, died_at + 3 * EVERY, standby)[0] - died_at
    assert takeover <= EVERY + 1.0
