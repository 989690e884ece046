"""The API's event listener stops promptly whatever Redis is doing (a shutdown must never hang)."""

import asyncio
import socket

from api.events import JobEvents
from shared.settings import Settings
from shared.store import async_redis_client


def test_stop_returns_while_the_listener_is_stuck_connecting():
    silent = socket.socket()  # accepts connections and never answers: a Redis that hangs
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

    async def scenario() -> None:
        client = async_redis_client(Settings(redis_url=url, redis_socket_timeout_s=30))
        events = JobEvents(client)
        events.start()
        await asyncio.sleep(0.3)  # inside the connection handshake
        await asyncio.wait_for(events.stop(), 5)
        await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        silent.close()


class _SwallowingPubSub:
    """A pub/sub whose subscribe turns a cancel into a ConnectionError, as redis-py's connect
    can when the cancel lands mid-handshake (a fake: the race is not reproducible on demand)."""

    async def subscribe(self, *_: object) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as exc:
            from redis.exceptions import ConnectionError as RedisConnectionError

            raise RedisConnectionError("connection lost") from exc

    async def aclose(self) -> None:
        return None


class _Client:
    def pubsub(self, **_: object) -> _SwallowingPubSub:
        return _SwallowingPubSub()


def test_stop_returns_when_redis_py_turns_the_cancel_into_a_connection_error():
    async def scenario() -> None:
        events = JobEvents(_Client())  # type: ignore[arg-type]
        events.start()
        await asyncio.sleep(0.1)
        await asyncio.wait_for(events.stop(), 5)

    asyncio.run(scenario())
