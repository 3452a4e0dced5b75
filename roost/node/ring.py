"""A bounded FIFO for outboxes (MicroPython-safe): the MQTT client's unsent messages."""


class Ring:
    """A bounded FIFO that drops its oldest item when full and counts the drops."""

    def __init__(self, size):
        self.items = [None] * size
        self.head = 0
        self.n = 0
        self.dropped = 0

    def __len__(self):
        return self.n

    def push(self, item):
        size = len(self.items)
        if self.n == size:
            self.head = (self.head + 1) % size
            self.n -= 1
            self.dropped += 1
        self.items[(self.head + self.n) % size] = item
        self.n += 1

    def peek(self):
        return self.items[self.head] if self.n else None

    def pop(self):
        if not self.n:
            return None
        item = self.items[self.head]
        self.items[self.head] = None
        self.head = (self.head + 1) % len(self.items)
        self.n -= 1
        return item
