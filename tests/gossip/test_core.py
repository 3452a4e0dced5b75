"""GossipCore unit and cluster tests; runs on CPython and under MicroPython (100 KB heap).

The gossip modules are imported before the cases are compiled, and the cases come in small
files: on a 100 KB MicroPython heap, compiling one big test file first fragments the heap so
much that the core no longer compiles.
"""

import roost.node.gossip  # noqa: F401  (compile the core first; see above)
from tests.gossip.core_cases import *  # noqa: F403, I001
from tests.gossip.view_cases import *  # noqa: F403

# Clusters of several cores in one interpreter live in test_cluster.py: a board holds one.
