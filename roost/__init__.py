"""roost: a fault-tolerant sensor network you can hold in your hand.

Kept free of imports so that boards can import ``roost.common`` and ``roost.node``
without pulling in CPython-only parts.
"""

__version__ = "0.1.0"
