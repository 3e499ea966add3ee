"""The breaker against a plain reference model, under random outcomes and clock steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.resilience import BreakerSettings, BreakerState, CircuitBreaker
from exporter.resilience.breaker import CircuitBreakerOpenError
from tests.helpers import FakeClock


class Ignored(Exception):
    pass


@dataclass
class Model:
    """resilience4j's rules written as plainly as possible."""

    s: BreakerSettings
    now: float = 0.0
    state: str = "closed"
    window: list[int] = field(default_factory=list)
    consecutive: int = 0
    open_until: float = 0.0
    trials: int = 0
    trial_ok: int = 0

    def trips(self) -> bool:
        if self.s.failure_threshold and self.consecutive >= self.s.failure_threshold:
            return True
        rate = self.s.failure_rate_threshold
        return (
            rate is not None
            and len(self.window) >= self.s.minimum_number_of_calls
            and sum(self.window) >= rate * len(self.window)
        )

    def go(self, state: str) -> None:
        self.state = state
        if state == "open":
            self.open_until = self.now + self.s.wait_duration_in_open
        if state == "half_open":
            self.trials = self.trial_ok = 0
        if state == "closed":
            self.window, self.consecutive = [], 0

    def call(self, outcome: str) -> bool:  # noqa: PLR0912 - the rules, spelled out
        """Returns whether the call was permitted."""
        if self.state == "open" and self.now >= self.open_until:
            self.go("half_open")
        if self.state in ("open", "forced_open"):
            return False
        trial = self.state == "half_open"
        if trial:
            if self.trials >= self.s.permitted_calls_in_half_open:
                return False
            self.trials += 1
        if outcome == "ignored":
            if trial:
                self.trials -= 1
        elif outcome == "success":
            if self.state == "closed":
                self.consecutive = 0
                self.window = [*self.window, 0][-self.s.sliding_window_size :]
                if self.trips():
                    self.go("open")
            elif trial:
                self.trial_ok += 1
                if self.trial_ok >= self.s.permitted_calls_in_half_open:
                    self.go("closed")
        elif self.state == "closed":
            self.consecutive += 1
            self.window = [*self.window, 1][-self.s.sliding_window_size :]
            if self.trips():
                self.go("open")
        elif trial:
            self.go("open")
        return True


settings_strategy = st.builds(
    BreakerSettings,
    failure_threshold=st.integers(0, 5),
    failure_rate_threshold=st.none() | st.sampled_from([0.2, 0.5, 0.75, 1.0]),
    sliding_window_size=st.integers(1, 8),
    minimum_number_of_calls=st.integers(1, 8),
    wait_duration_in_open=st.sampled_from([0.0, 1.0, 5.0]),
    permitted_calls_in_half_open=st.integers(1, 3),
    ignore_exceptions=st.just((Ignored,)),
)
steps = st.lists(
    st.one_of(
        st.sampled_from(["success", "failure", "ignored", "force_open", "disable", "reset"]),
        st.floats(0.1, 6.0).map(lambda dt: ("advance", dt)),
    ),
    max_size=60,
)


def attempt(breaker: CircuitBreaker, outcome: str) -> bool:
    def fn() -> None:
        if outcome == "failure":
            raise RuntimeError("boom")
        if outcome == "ignored":
            raise Ignored

    try:
        breaker.call(fn)
    except CircuitBreakerOpenError:
        return False
    except (RuntimeError, Ignored):
        pass
    return True


@settings(max_examples=300, deadline=None)
@given(settings_strategy, steps)
def test_breaker_matches_the_model(s: BreakerSettings, plan: list[str | tuple[str, float]]) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("model", s, clock=clock)
    model = Model(s)
    for step in plan:
        if isinstance(step, tuple):
            clock.advance(step[1])
            model.now += step[1]
        elif step in ("force_open", "disable", "reset"):
            getattr(breaker, step)()
            model.go({"force_open": "forced_open", "disable": "disabled", "reset": "closed"}[step])
        else:
            assert attempt(breaker, step) == model.call(step), (step, model)
        assert breaker.state == BreakerState(model.state), (step, model)


def test_counters_add_up() -> None:
    clock = FakeClock()
    settings = BreakerSettings(failure_threshold=2, ignore_exceptions=(Ignored,))
    breaker = CircuitBreaker("c", settings, clock=clock)
    for outcome in ["success", "ignored", "failure", "failure", "success", "success"]:
        attempt(breaker, outcome)
    snap = breaker.snapshot()
    assert (snap.successful, snap.failed, snap.ignored, snap.not_permitted) == (1, 2, 1, 2)
    assert snap.transitions == {(BreakerState.CLOSED, BreakerState.OPEN): 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": -1},
        {"failure_rate_threshold": 0.0},
        {"failure_rate_threshold": 1.5},
        {"sliding_window_size": 0},
        {"permitted_calls_in_half_open": 0},
        {"call_timeout": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerSettings(**kwargs)  # type: ignore[arg-type]
