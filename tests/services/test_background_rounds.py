"""The shape of every background loop: rounds `interval` apart, except after a full round."""

from __future__ import annotations

import asyncio

from communication_agent.services.background import run_rounds

HOUR = 3600.0  # an interval no test waits for


async def test_a_full_round_is_followed_at_once_until_the_backlog_is_gone() -> None:
    backlog = [50, 50, 50, 7]  # three full batches, then the rest
    done: list[int] = []
    stop = asyncio.Event()

    async def one_round() -> int:
        done.append(backlog.pop(0) if backlog else 0)
        if not backlog:
            stop.set()
        return done[-1]

    # Had the loop paused after a full batch, this would wait an hour per round.
    await asyncio.wait_for(
        run_rounds("test", one_round, owner="t", interval=HOUR, stop=stop, full_round=50), 30
    )
    assert done == [50, 50, 50, 7]


async def test_a_round_short_of_full_waits_for_the_interval() -> None:
    calls = 0
    stop = asyncio.Event()

    async def one_round() -> int:
        nonlocal calls
        calls += 1
        return 49

    loop = asyncio.create_task(
        run_rounds("test", one_round, owner="t", interval=HOUR, stop=stop, full_round=50)
    )
    for _ in range(20):  # let the loop run as far as it will without the clock moving on
        await asyncio.sleep(0)
    assert calls == 1
    stop.set()
    await asyncio.wait_for(loop, 30)
    assert calls == 1


async def test_a_failed_round_waits_rather_than_spinning() -> None:
    calls = 0
    stop = asyncio.Event()

    async def one_round() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("database unreachable")

    loop = asyncio.create_task(
        run_rounds("test", one_round, owner="t", interval=HOUR, stop=stop, full_round=1)
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert calls == 1
    stop.set()
    await asyncio.wait_for(loop, 30)
