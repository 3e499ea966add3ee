"""The plain-ASGI helpers behind the hot routes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from exporter.http.asgi import PER_TURN, ClientGone, HotPaths, Turns, read_body, route_path


def _receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def _scope(path: str = "/x", root_path: str = "", **headers: str) -> dict[str, Any]:
    return {
        "type": "http", "method": "POST", "path": path, "root_path": root_path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/metrics", "", "/metrics"),
        ("/medic/metrics", "/medic", "/metrics"),
        ("/medicine/metrics", "/medic", "/medicine/metrics"),
        ("/other", "/medic", "/other"),
    ],
)
def test_route_path_strips_only_the_mount_prefix(path: str, root: str, expected: str) -> None:
    assert route_path(_scope(path, root)) == expected


def test_read_body_joins_chunks_and_stops_past_the_limit() -> None:
    chunks = [{"type": "http.request", "body": b"ab", "more_body": True},
              {"type": "http.request", "body": b"cd", "more_body": False}]  # fmt: skip
    assert asyncio.run(read_body(_scope(), _receiver(*chunks), 4)) == b"abcd"
    assert asyncio.run(read_body(_scope(), _receiver(*chunks), 3)) is None


def test_read_body_refuses_a_declared_oversize_body_without_reading_it() -> None:
    receive = _receiver()  # reading would fail: nothing to receive
    assert asyncio.run(read_body(_scope(content_length="11"), receive, 10)) is None


def test_read_body_reports_a_client_that_left() -> None:
    with pytest.raises(ClientGone):
        asyncio.run(read_body(_scope(), _receiver({"type": "http.disconnect"}), 10))


def test_hot_paths_send_the_rest_to_the_app() -> None:
    seen: list[str] = []

    def endpoint(name: str) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append(name)

        return app

    hot = HotPaths(endpoint("app"), {("/x", "POST"): endpoint("hot")})
    asyncio.run(hot(_scope("/x"), _receiver(), None))  # type: ignore[arg-type]
    asyncio.run(hot({**_scope("/x"), "method": "GET"}, _receiver(), None))  # type: ignore[arg-type]
    asyncio.run(hot({"type": "lifespan"}, _receiver(), None))  # type: ignore[arg-type]
    assert seen == ["hot", "app", "app"]


def test_turns_let_a_few_through_per_loop_turn_in_order_skipping_cancelled_ones() -> None:
    log: list[str] = []

    async def main() -> None:
        turns = Turns()
        loop = asyncio.get_running_loop()
        ticking = True

        def tick() -> None:  # one entry per loop turn
            log.append("turn")
            if ticking:
                loop.call_soon(tick)

        async def waiter(name: str) -> None:
            await turns.take()
            log.append(name)

        tasks = [asyncio.create_task(waiter(f"w{i}")) for i in range(5)]
        await asyncio.sleep(0)  # every waiter is queued now
        tasks[1].cancel()  # e.g. its request was cancelled at shutdown
        loop.call_soon(tick)
        await asyncio.gather(*tasks, return_exceptions=True)
        ticking = False

    asyncio.run(main())
    released = [entry for entry in log if entry != "turn"]
    assert released == ["w0", "w2", "w3", "w4"]  # arrival order, the cancelled one skipped
    runs, current = [], 0
    for entry in log:
        if entry == "turn":
            runs.append(current)
            current = 0
        else:
            current += 1
    runs.append(current)
    assert max(runs) <= PER_TURN  # never more than PER_TURN between two loop turns
