"""What a board runs (nodemain.board_config): its config.json over the board defaults; on
MicroPython the runtime collects garbage early (gc_threshold) unless the board says not to.
CPython and MicroPython."""

from roost.node.aio import MICROPYTHON
from roost.node.nodemain import board_config, check_config
from roost.node.runtime import RuntimeConfig


class _Fcfg:
    node_id = "b07"
    fleet = "lab"
    board = "esp32"
    broker = "mqtt://10.0.0.2:1883"
    udp_port = 4210
    runtime = None


def _runtime(cfg):
    return RuntimeConfig(**cfg.get("runtime", {}))


def test_a_board_collects_garbage_early_by_default():
    cfg = check_config(board_config(_Fcfg()))
    assert _runtime(cfg).gc_threshold == (32768 if MICROPYTHON else 0)
    assert cfg["brokers"] == ["mqtt://10.0.0.2:1883"] and cfg["udp"] == ["0.0.0.0", 4210]


def test_the_boards_own_runtime_section_wins():
    f = _Fcfg()
    f.runtime = {"seeds": ["n01"], "runtime": {"gc_threshold": 0, "status_interval_ms": 900}}
    cfg = check_config(board_config(f))
    rc = _runtime(cfg)
    assert rc.gc_threshold == 0 and rc.status_interval_ms == 900
    assert cfg["seeds"] == ["n01"]
    f.runtime = {"runtime": {"status_interval_ms": 900}}
    rc = _runtime(board_config(f))
    assert rc.status_interval_ms == 900 and rc.gc_threshold == (32768 if MICROPYTHON else 0)


def test_a_board_keeps_its_state_beside_its_config():
    # relative: a board boots in its flash root, a virtual board in its own flash directory
    # (an absolute "/roost" put a virtual board's state in the host's root directory)
    cfg = check_config(board_config(_Fcfg()))
    assert cfg["storage"] == "data"
