"""GossipCore unit and cluster tests; runs on CPython and under MicroPython (100 KB heap).

The gossip modules are imported before the cases are compiled, and the cases come in small
files: on a 100 KB MicroPython heap, compiling one big test file first fragments the heap so
much that the core no longer compiles.
"""

import roost.node.gossip  # noqa: F401  (compile the core first; see above)
from tests.gossip.cluster_cases import *  # noqa: F403
from tests.gossip.core_cases import *  # noqa: F403, I001
from tests.gossip.view_cases import *  # noqa: F403

# Four cores through 100 virtual seconds of partition and healing outgrow what is left of a
# 100 KB heap on the 64-bit unix port next to all this code; it runs on CPython here and the
# simulator tests (test_sim.py) cover partitions over many seeds.
MPY_SKIP = ("test_cluster_partition_heals_to_one_view",)
