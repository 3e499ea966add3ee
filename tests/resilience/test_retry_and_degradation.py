"""Retries counted by kind; fallbacks by why they ran."""

from __future__ import annotations

import asyncio

import pytest

from exporter.resilience import (
    BreakerRegistry,
    BreakerSettings,
    CircuitBreakerOpenError,
    GracefulDegradation,
    RetryManager,
)


def flaky(failures: int, exc: type[Exception] = ConnectionError):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc(f"attempt {calls['n']}")
        return "ok"

    return fn, calls


def test_retry_counts_each_kind_and_backs_off_exponentially() -> None:
    slept: list[float] = []
    retries = RetryManager(sleep=slept.append)
    wrap = retries.retry_with_backoff("download", max_attempts=3, initial_delay=1, jitter=0)
    assert wrap(flaky(0)[0])() == "ok"
    assert wrap(flaky(2)[0])() == "ok"
    assert slept == [1, 2]
    with pytest.raises(ConnectionError, match="attempt 3"):
        wrap(flaky(5)[0])()
    with pytest.raises(ValueError):
        retries.retry_with_backoff("download", retry_on=(ConnectionError,))(
            flaky(1, ValueError)[0]
        )()
    counts = retries.counts()
    assert counts[("download", "successful_without_retry")] == 1
    assert counts[("download", "successful_with_retry")] == 1
    assert counts[("download", "failed_with_retry")] == 1
    assert counts[("download", "failed_without_retry")] == 1


def test_jitter_stays_within_bounds() -> None:
    slept: list[float] = []
    retries = RetryManager(sleep=slept.append)
    fn = retries.retry_with_backoff("j", max_attempts=4, initial_delay=1, max_delay=3, jitter=0.5)
    with pytest.raises(ConnectionError):
        fn(flaky(10)[0])()
    assert len(slept) == 3
    assert 1 <= slept[0] <= 1.5 and 2 <= slept[1] <= 2.5 and slept[2] <= 3


def test_a_breaker_refusal_is_never_retried() -> None:
    slept: list[float] = []
    retries = RetryManager(sleep=slept.append)

    @retries.retry_with_backoff("guarded", max_attempts=5)
    def refused() -> None:
        raise CircuitBreakerOpenError("gen", BreakerRegistry().get("gen").state, 3.0)

    with pytest.raises(CircuitBreakerOpenError):
        refused()
    assert slept == []
    assert retries.counts()[("guarded", "failed_without_retry")] == 1


def test_async_retry() -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    retries = RetryManager(async_sleep=record)
    calls = {"n": 0}

    @retries.retry_with_backoff("agen", max_attempts=3, initial_delay=0.5, jitter=0)
    async def generate() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TimeoutError
        return "audio"

    assert asyncio.run(generate()) == "audio"
    assert slept == [0.5, 1.0]
    assert retries.counts()[("agen", "successful_with_retry")] == 1


def test_fallback_when_marked_failed_when_breaker_open_and_when_primary_raises() -> None:
    breakers = BreakerRegistry()
    breakers.declare("tts", BreakerSettings(failure_threshold=2))
    breakers.get("tts")
    degradation = GracefulDegradation(breakers)
    degradation.register_fallback("tts", lambda text: f"mock:{text}")

    def broken(text: str) -> str:
        raise RuntimeError("CUDA error: device-side assert")

    assert degradation.execute_with_fallback("tts", str.upper, "hi") == "HI"
    assert degradation.execute_with_fallback("tts", broken, "a") == "mock:a"
    assert degradation.is_component_healthy("tts")  # one error is the breaker's to judge
    assert degradation.execute_with_fallback("tts", broken, "b") == "mock:b"
    assert not degradation.is_component_healthy("tts")  # breaker opened
    assert degradation.execute_with_fallback("tts", str.upper, "c") == "mock:c"
    breakers.get("tts").reset()
    degradation.mark_component_failed("tts", "weights corrupted")
    assert degradation.execute_with_fallback("tts", str.upper, "d") == "mock:d"
    assert degradation.degraded() == {"tts": True}
    degradation.mark_component_healthy("tts")
    assert degradation.execute_with_fallback("tts", str.upper, "e") == "E"
    counts = degradation.counts()
    assert counts[("tts", "primary")] == 2
    assert counts[("tts", "fallback_after_error")] == 2
    assert counts[("tts", "fallback_breaker_open")] == 1
    assert counts[("tts", "fallback_marked_failed")] == 1
    assert counts[("tts", "fallback_failed")] == 0


def test_fallback_failing_or_missing_is_counted_once_and_raised() -> None:
    degradation = GracefulDegradation()

    def bad_fallback() -> str:
        raise OSError("mock model missing too")

    degradation.register_fallback("gen", bad_fallback)
    degradation.mark_component_failed("gen")
    with pytest.raises(OSError):
        degradation.execute_with_fallback("gen", lambda: "x")
    degradation.mark_component_failed("other")
    with pytest.raises(LookupError, match="no fallback"):
        degradation.execute_with_fallback("other", lambda: "x")
    counts = degradation.counts()
    assert counts[("gen", "fallback_failed")] == 1
    assert counts[("gen", "fallback_marked_failed")] == 0


def test_async_fallback_with_breaker_given_by_name() -> None:
    breakers = BreakerRegistry()
    degradation = GracefulDegradation(breakers)

    async def mock(prompt: str) -> str:
        return f"mock:{prompt}"

    degradation.register_fallback("llm", mock, breaker="llm-breaker")

    async def fails(prompt: str) -> str:
        raise ConnectionError

    async def main() -> list[str]:
        return [
            await degradation.execute_with_fallback_async("llm", fails, str(i)) for i in range(6)
        ]

    assert asyncio.run(main()) == [f"mock:{i}" for i in range(6)]
    counts = degradation.counts()
    assert counts[("llm", "fallback_after_error")] == 5  # default threshold: 5 failures
    assert counts[("llm", "fallback_breaker_open")] == 1
