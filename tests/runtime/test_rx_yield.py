"""The receive loop yields between datagrams: a flood of waiting datagrams must not starve
the node's other tasks (ticks, the status file and fault switch, a board's watchdog).
Runs on MicroPython too, where every transport is read by this loop."""

import asyncio

from roost.node.runtime import NodeRuntime
from tests.runtime._tmp import remove_tree, scratch_dir


class QuietHost:
    def __init__(self, node_id, channel, storage, rng, now_ms):
        self.storage = storage

    def receive(self, now_ms, src, payload):
        return []

    def tick(self, now_ms):
        return []

    def next_deadline_ms(self):
        return None


class FloodTransport:
    """recv returns at once while datagrams wait, as UDP and MQTT transports do."""

    def __init__(self, n):
        self.left = n

    def peers(self):
        return []

    def send(self, dst, payload):
        return False

    async def recv(self):
        while self.left <= 0:
            await asyncio.sleep(1)
        self.left -= 1
        return "n2", b"x"

    def close(self):
        pass


def test_a_flood_of_datagrams_leaves_room_for_the_other_tasks():
    d = scratch_dir("rxy")
    try:
        t = FloodTransport(200)
        rt = NodeRuntime(QuietHost, "n1", "k", d, [t], log=lambda m: None)
        rt.boot()
        seen = []

        async def main():
            rt.running = True
            task = asyncio.create_task(rt._rx_loop(t))
            for _ in range(1000):  # another task of the node, while the flood lasts
                if t.left <= 0:
                    break
                seen.append(t.left)
                await asyncio.sleep(0)
            rt.running = False
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

        asyncio.run(main())
        assert t.left == 0
        # it ran between the datagrams, not once before and after the whole flood
        assert len(seen) > 100, len(seen)
    finally:
        remove_tree(d)
