"""Gossip body codecs and size bounds; runs on CPython and under MicroPython (100 KB heap).

The gossip modules are imported before the cases are compiled (see test_core.py for why).
"""

import roost.node.gossip  # noqa: F401  (compile the core first)
from tests.gossip.message_cases import *  # noqa: F403, I001
