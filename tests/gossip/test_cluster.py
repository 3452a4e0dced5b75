"""Gossip clusters of a few cores pumped in one process (join, crash, sleep, partition).

Runs on CPython and under MicroPython; several whole nodes share one interpreter here, so the
MicroPython gate gives this file more heap than a board (which holds one node)."""

import roost.node.gossip  # noqa: F401  (compile the core first: less fragmentation)
from tests.gossip.cluster_cases import *  # noqa: F403, I001
