"""main.py logic: the started and joined lines, the runtime hook, and an update confirmed by
"joined" or rolled back when it never comes. MicroPython-safe."""

from roost.firmware import boardlib, bootsel, ota
from tests.firmware._fakes import CFG, FakeMachine, FakeNetwork, _board, _capture, _restore
from tests.firmware._tmp import TmpDir, write


class FakeRuntime:
    def __init__(self):
        self.calls = []

    def run_board(self, cfg, secrets, hooks):
        self.calls.append((cfg.node_id, secrets["fleet_key"]))
        hooks.feed()
        hooks.check()
        hooks.joined(0)


def test_main_starts_the_runtime_and_joined_confirms_an_update():
    lines = _capture()
    try:
        with TmpDir() as d:
            _board(d)
            write(d + "/slots/a/x.py", "")
            m = ota.make_manifest({"x.py": b"1"}, 1, "v1")
            assert ota.apply(d, "k", m, ota.sign("k", m), {"x.py": b"1"}) is None
            slot, _ = bootsel.select(d)
            boardlib.boot(slot, d, FakeMachine, FakeNetwork)
            assert boardlib.STATE["safe"] is None and ota.in_trial(d)
            rt = FakeRuntime()
            assert boardlib.main(d, FakeMachine, FakeNetwork, runtime=rt) == "stopped"
            assert rt.calls == [("n05", "k")]
            assert "roost: started n05" in lines and "roost: joined fleet lab as n05" in lines
            assert "roost: update confirmed in slot b" in lines
            assert not ota.in_trial(d)
    finally:
        _restore()


def test_idle_without_runtime_rolls_back_a_trial_that_never_joins():
    lines = _capture()
    try:
        with TmpDir() as d:
            _board(d, dict(CFG, ota_join_timeout_ms=1000, wifi_ssid=""))
            write(d + "/slots/a/x.py", "")
            m = ota.make_manifest({"x.py": b"1"}, 1, "v1")
            assert ota.apply(d, "k", m, ota.sign("k", m), {"x.py": b"1"}) is None
            boardlib.boot(bootsel.select(d)[0], d, FakeMachine, FakeNetwork)
            before = FakeMachine.resets
            out = boardlib.main(d, FakeMachine, FakeNetwork, runtime=object(), idle_rounds=3)
            assert out == "rollback" and FakeMachine.resets == before + 1
            assert bootsel.read_state(d)[0] == "a"
            assert any("rolling back" in ln for ln in lines)
    finally:
        _restore()


class _BadConfigRuntime:
    class ConfigError(ValueError):
        pass

    def run_board(self, cfg, secrets, hooks):
        raise self.ConfigError("unknown board 'esp32-nope': choose one of esp32, pi-4")


def test_a_config_the_node_refuses_is_safe_mode_and_idles_not_a_reset_loop():
    """A typo only the node sees (a board name, a runtime option): one safe-mode line, then
    the board idles feeding its watchdog; main.py's reset-in-10-s is for crashes."""
    lines = _capture()
    try:
        with TmpDir() as d:
            _board(d, dict(CFG, wifi_ssid=""))
            boardlib.boot("a", d, FakeMachine, FakeNetwork)
            before = FakeMachine.resets
            out = boardlib.main(d, FakeMachine, FakeNetwork, runtime=_BadConfigRuntime(),
                                idle_rounds=2)
            assert out == "idle" and FakeMachine.resets == before
            assert ("roost: safe mode: config.json: unknown board 'esp32-nope': choose one "
                    "of esp32, pi-4; fix it and reset the board.") in lines
    finally:
        _restore()


def test_an_update_on_trial_that_refuses_the_config_rolls_back_at_once():
    """Code on trial that rejects config.json (an option an older release lacks) went to
    safe mode, where no join deadline runs: the board stayed on trial until two power
    cycles. It rolls back and resets at once; a confirmed slot still gets safe mode."""
    lines = _capture()
    try:
        with TmpDir() as d:
            _board(d, dict(CFG, udp_port=0))
            write(d + "/slots/a/x.py", "")
            m = ota.make_manifest({"x.py": b"1"}, 4, "v4")
            assert ota.apply(d, "k", m, ota.sign("k", m), {"x.py": b"1"}) is None
            before = FakeMachine.resets
            boardlib.boot(bootsel.select(d)[0], d, FakeMachine, FakeNetwork)
            assert FakeMachine.resets == before + 1 and boardlib.STATE["safe"] is None
            assert bootsel.read_state(d)[:3] == ["a", "b", bootsel.CONFIRMED]
            assert any(ln.startswith("roost: update v4 cannot start in slot b; rolled back "
                                     "to slot a (") for ln in lines), lines
            boardlib.boot(bootsel.select(d)[0], d, FakeMachine, FakeNetwork)  # the old code
            assert boardlib.STATE["safe"] and FakeMachine.resets == before + 1
    finally:
        _restore()
