"""``roost chaos run`` keeps every replica group's majority up and together (no process)."""

import json

from roost.emulator import chaos
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


def _switch_fleet(tmp_path, ids):
    nodes = {}
    for n in ids:
        (tmp_path / n).mkdir()
        nodes[n] = {"dir": str(tmp_path / n)}
    (tmp_path / "fleet.json").write_text(json.dumps({"ids": ids, "nodes": nodes}))
    return chaos.FaultSwitch(tmp_path)


def test_a_partition_set_before_a_chaos_run_is_read_back_for_its_budget(tmp_path):
    """The run counts a partition already in force (it had taken none as its start) and
    names it, with the losses, before it begins."""
    ids = ["n01", "n02", "n03", "n04", "n05"]
    sw = _switch_fleet(tmp_path, ids)
    assert sw.sides() is None and chaos.faults_now(tmp_path) == ""
    sw.partition([["n01", "n02"], ["n03", "n04", "n05"]])
    sw.loss("n04", 0.3)
    assert sw.sides() == [["n01", "n02"], ["n03", "n04", "n05"]]
    assert chaos.faults_now(tmp_path) == "n01,n02 | n03,n04,n05; n04 loses 30% of its datagrams"
    assert chaos.faults_now(tmp_path, losses=False) == "n01,n02 | n03,n04,n05"
    # a group across the cut with two of three on the small side: a kill there breaks it
    groups = [["g0", ["n01", "n02", "n03"]]]
    assert groups_keep_majority(groups, set(), sw.sides())
    assert not groups_keep_majority(groups, {"n02"}, sw.sides())
    sw.partition([["n01"], ["n02"]])  # the others hear both sides
    assert sw.sides() == [["n01", "n03", "n04", "n05"], ["n02", "n03", "n04", "n05"]]
    assert chaos.faults_now(tmp_path, losses=False) == "n01 | n02 (n03,n04,n05 hear every side)"
    sw.heal()
    assert sw.sides() is None and chaos.faults_now(tmp_path) == ""


def test_a_node_that_ended_by_itself_is_reported_with_its_logs_last_line(tmp_path):
    """`emulate up --heap 1 --micropython 1` said only 'n03 is down'; the MemoryError was
    in its log, which nothing named. A node roost chaos stopped (pid cleared) says no more."""
    from roost.emulator.fleet import _why_down

    log = "roost: n03 boot 1\nMemoryError: allocating 143696 bytes\n\n"
    (tmp_path / "node.log").write_text(log)
    state = {"nodes": {"n03": {"dir": str(tmp_path), "pid": 4242, "interp": "micropython"},
                       "n04": {"dir": str(tmp_path), "pid": None, "interp": "cpython"}}}
    why = _why_down(state, "n03", {"process": "down"})
    assert why.endswith("node.log ends: MemoryError: allocating 143696 bytes)"), why
    assert _why_down(state, "n04", {"process": "down"}) == ""
    assert _why_down(state, "n03", {"process": "paused"}) == ""
