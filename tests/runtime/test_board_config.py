"""What a board runs (nodemain.board_config): its config.json over the board defaults, one
of which is collecting garbage early (runtime gc_threshold). CPython and MicroPython."""

from roost.node.nodemain import BOARD_GC_THRESHOLD, board_config, check_config


class _Fcfg:
    node_id = "b07"
    fleet = "lab"
    board = "esp32"
    broker = "mqtt://10.0.0.2:1883"
    udp_port = 4210
    runtime = None


def test_a_board_collects_garbage_early_by_default():
    cfg = check_config(board_config(_Fcfg()))
    assert cfg["runtime"] == {"gc_threshold": BOARD_GC_THRESHOLD}
    assert cfg["brokers"] == ["mqtt://10.0.0.2:1883"] and cfg["udp"] == ["0.0.0.0", 4210]


def test_the_boards_own_runtime_section_wins():
    f = _Fcfg()
    f.runtime = {"seeds": ["n01"], "runtime": {"gc_threshold": 0, "status_interval_ms": 900}}
    cfg = check_config(board_config(f))
    assert cfg["runtime"] == {"gc_threshold": 0, "status_interval_ms": 900}
    assert cfg["seeds"] == ["n01"]
    f.runtime = {"runtime": {"status_interval_ms": 900}}
    assert board_config(f)["runtime"] == {"status_interval_ms": 900,
                                          "gc_threshold": BOARD_GC_THRESHOLD}
