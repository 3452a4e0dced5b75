"""``roost chaos run`` keeps every replica group's majority up and together (no process)."""

from roost.emulator.chaos import groups_keep_majority

G = [["g0", ["n01", "n02", "n03"]], ["g1", ["n04", "n05", "n06"]]]


def test_a_kill_beside_a_partition_counts_the_nodes_cut_off():
    # n02 cut off, then n01 killed: n03 alone on the majority side (seen in a real run)
    sides = [["n02"], ["n01", "n03", "n04", "n05", "n06"]]
    assert groups_keep_majority(G, set(), sides)
    assert not groups_keep_majority(G, {"n01"}, sides)
    assert groups_keep_majority(G, {"n04"}, sides)


def test_a_group_may_keep_its_majority_on_the_smaller_side():
    sides = [["n04", "n05"], ["n01", "n02", "n03", "n06"]]
    assert groups_keep_majority(G, set(), sides)
    assert not groups_keep_majority(G, {"n05"}, sides)


def test_without_a_partition_a_minority_may_be_down():
    assert groups_keep_majority(G, {"n01", "n04"})
    assert not groups_keep_majority(G, {"n01", "n02"})
    assert not groups_keep_majority(G, set(), [["n01"], ["n02"], ["n03", "n04", "n05"]])
