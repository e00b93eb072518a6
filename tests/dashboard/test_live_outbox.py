"""A browser that stops reading its socket holds up nobody: its frames queue in its own outbox, the backlog is
dropped when full, and once it reads again it is sent the current state (bench/live.py measures the others)."""

import asyncio

from dashboard.consumers import Outbox


def test_a_stalled_browser_loses_its_backlog_and_gets_the_state_once_it_reads_again():
    async def scenario():
        sent, resyncs, reading = [], [], asyncio.Event()

        async def send(message):
            if message["type"] == "websocket.send":
                await reading.wait()  # the browser's TCP window is full until it reads
            sent.append(message.get("text", message["type"]))

        async def resync():
            resyncs.append(True)

        outbox = Outbox(send, resync, limit=3)
        await outbox.put({"type": "websocket.accept"})
        await outbox.put({"type": "websocket.send", "text": "0"})
        await asyncio.sleep(0)  # the writer takes frame 0 and waits on the socket
        for n in range(1, 10):  # the consumer never waits: each put returns at once
            await asyncio.wait_for(outbox.put({"type": "websocket.send", "text": str(n)}), 0.05)
        assert outbox.behind and outbox.dropped == 9 and resyncs == []
        reading.set()
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert sent == ["websocket.accept", "0"] and resyncs == [True] and not outbox.behind
        await outbox.put({"type": "websocket.send", "text": "state"})  # what the consumer sends on resync
        await asyncio.sleep(0.01)
        assert sent[-1] == "state"
        outbox.close()

    asyncio.run(scenario())


def test_frames_within_the_bound_all_arrive_in_order():
    async def scenario():
        sent = []

        async def send(message):
            await asyncio.sleep(0.001)
            sent.append(message.get("text", message["type"]))

        async def resync():
            raise AssertionError("never behind")

        outbox = Outbox(send, resync, limit=3)
        await outbox.put({"type": "websocket.accept"})
        for n in range(20):
            await outbox.put({"type": "websocket.send", "text": str(n)})
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)
        assert sent == ["websocket.accept", *map(str, range(20))]
        outbox.close()

    asyncio.run(scenario())
