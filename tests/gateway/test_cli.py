"""The roost command line: help reads well, mistakes are one sentence, the demo holds."""

import json
import subprocess
import sys

import pytest

from roost.gateway.cli import build_parser, main
from roost.gateway.demo import run_demo


def _commands(parser, prefix=()):
    """Every command path in the parser tree."""
    import argparse

    out = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in sorted(action.choices.items()):
                out += _commands(sub, prefix + (name,))
    return out


def test_every_command_has_help(capsys):
    paths = _commands(build_parser())
    assert ("demo",) in paths and ("sim", "gossip") in paths
    for path in paths:
        with pytest.raises(SystemExit) as e:
            main(list(path) + ["--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "usage: roost" in out and len(out) > 80, path


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["demo", "--nodes", "two"],
        ["demo", "--nodes", "2"],
        ["sim", "gossip", "--nodes", "-3"],
        ["sim", "gossip", "--loss", "7"],
        ["sim"],
        ["load", "--dir", ".", "--rate", "-5"],
        ["load", "--dir", ".", "--duration", "nan"],
        ["load", "--dir", ".", "--keys", "0"],
        # the history's file is checked before the load runs, not after (its history lost)
        ["load", "--dir", ".", "--history", "/nonexistent/h.jsonl"],
        ["load", "--dir", ".", "--history", "."],
        ["kv", "get", "k", "--dir", ".", "--timeout", "inf"],
        ["kv", "get", "k", "--dir", ".", "--timeout", "nan"],
        ["--bogus"],
        ["broker", "--dir", "/tmp/roost-test-never", "--port", "99999"],
        ["demo", "--duration", "0"],
        ["demo", "--duration", "nan"],
        ["sim", "gossip", "--latency-ms", "99999999999"],
        ["sim", "kv", "--latency-ms", "100000000"],
        # seeds fold to 32 bits: these would have replayed another seed's run
        ["sim", "gossip", "--seed", "-1"],
        ["demo", "--seed", "4294967296"],
        ["demo", "--sim", "--seed", "-1"],
        ["load", "--dir", ".", "--seed", "-2"],
        ["plan", "--dir", "/tmp/roost-test-never", "--fleet", "f", "--broker",
         "mqtt://127.0.0.1:1883", "--nodes", "n01:pi-4,n02:pi-4,n03:pi-4", "--addr",
         "n01=h:99999"],
        # the store's limits, said before anything is sent
        ["kv", "get", "k" * 65, "--dir", "."],
        ["kv", "put", "k", "v" * 257, "--dir", "."],
        ["load", "--dir", ".", "--value-size", "300"],
        # paths that cannot be used: one sentence naming them
        ["build", "--board", "esp32", "--out", "/proc/roost-x/out", "--no-measure"],
        ["broker", "--dir", "/proc/roost-x"],
        ["plan", "--dir", "/etc/passwd", "--fleet", "f", "--broker", "mqtt://10.0.0.1:1883",
         "--nodes", "n01:pi-4,n02:pi-4,n03:pi-4"],
        # emulate up: what would stop every node at start, said before anything starts
        ["emulate", "up", "--dir", "/nonexistent/f", "--nodes", "3", "--broker", "foo"],
        ["emulate", "up", "--dir", "/nonexistent/f", "--nodes", "3", "--replicas", "2"],
        ["emulate", "up", "--dir", "/nonexistent/f", "--nodes", "3", "--timeout", "nan"],
        ["emulate", "up", "--dir", "/nonexistent/f", "--nodes", "3", "--sample-ms", "50"],
        ["emulate", "up", "--dir", "/nonexistent/f", "--nodes", "100000"],
    ],
)
def test_mistakes_are_one_sentence_exit_2(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    assert err.strip() and len(err.strip().splitlines()) == 1, err


def test_demo_story_holds():
    said = []
    result = run_demo(say=said.append)
    assert result["converged_s"] is not None
    assert len(result["pulls"]) == 2
    for pull in result["pulls"]:
        assert pull["all_marked_dead_s"] is not None and pull["all_marked_dead_s"] < 10
        assert 0 < pull["first_noticed_s"] <= pull["all_marked_dead_s"]
    assert result["rejoin_s"] is not None
    assert result["coverage"] == 1.0 and result["readings"] > 50
    text = "\n".join(said)
    assert "PLUG PULLED" in text and "plugged back in" in text


def test_demo_is_deterministic():
    a = run_demo(seed=4, say=lambda *x: None)
    b = run_demo(seed=4, say=lambda *x: None)
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b


def test_roost_demo_json_from_the_installed_command():
    out = subprocess.run([sys.executable, "-m", "roost.gateway.cli", "demo", "--sim", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["nodes"] == 9 and data["coverage"] == 1.0


def test_client_ids_do_not_repeat():
    """A replica answers a (client id, seq) it has applied from that client's session, and
    clients started in the same second share their first seq: a repeated id gets another
    request's answer. 24 random bits repeated within 120 gets in one CI run; 100,000 draws
    here would repeat ~300 times with them."""
    from roost.gateway.client import _client_id

    ids = [_client_id("k") for _ in range(100000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) <= 32 for i in ids)  # a node id's limit (roost.common.ids)


def test_output_into_a_closed_pipe_ends_quietly():
    """`roost status | head -8` printed a BrokenPipeError traceback (the handler for it
    came after the one for OSError, which it is)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "roost.gateway.cli", "sim", "gossip",
                          "--nodes", "9", "--seed", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err
