"""Effects a core returns; the runtime (or the simulator) carries them out in order.

(SEND, dst, payload)        send bytes to node dst ("*" is every known peer)
(PERSIST, key, value)       write value durably under key before any later effect runs:
                            a SEND that follows a PERSIST waits for the write to finish.
                            The value is handed over: the core must not mutate it later.
(APPLY, index, command)     a committed command, applied to the state machine in index order
(EVENT, name, data)         something observers care about (a member's state changed, a
                            summary arrived, a leader was elected); never affects the core
"""

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


SEND = const(1)
PERSIST = const(2)
APPLY = const(3)
EVENT = const(4)
EFFECT_NAMES = ("", "send", "persist", "apply", "event")
