"""A CancelledError from a future cancelled inside a client is an error to survive; one from
cancelling the task itself is a stop (shared/kafka.py `cancelled_from_inside`). Plain asyncio,
no broker: the two shapes the relay's and the consumer's loops tell apart."""

from __future__ import annotations

import asyncio

from shared.kafka import cancelled_from_inside


async def test_a_future_cancelled_by_someone_else_is_not_a_stop() -> None:
    request = asyncio.get_running_loop().create_future()

    async def waits_on_a_request() -> bool:
        try:
            await request
        except asyncio.CancelledError:
            return cancelled_from_inside()
        return False

    waiter = asyncio.create_task(waits_on_a_request())
    await asyncio.sleep(0)  # the waiter is now awaiting the request
    request.cancel()  # as a client does with requests in flight when a connection drops
    assert await waiter is True


async def test_cancelling_the_task_itself_is_a_stop() -> None:
    seen: list[bool] = []
    blocked = asyncio.Event()

    async def waits_forever() -> None:
        try:
            await blocked.wait()
        except asyncio.CancelledError:
            seen.append(cancelled_from_inside())
            raise

    waiter = asyncio.create_task(waits_forever())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert seen == [False]
