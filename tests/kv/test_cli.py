"""`roost sim kv` through its parser (CPython): JSON shape, readable output, bad arguments,
history file, and the replay line on a non-linearizable run."""

import argparse
import json

from roost.emulator.kv_scenario import _replay, add_kv_parser, run_kv, run_kv_cli
from roost.emulator.linearize import load_history

KEYS = {"ops", "ok", "failed", "unknown", "throughput_ops_per_virtual_s", "latency_ms",
        "leader_changes", "linearizable", "seed", "wall_s"}


def _parse(argv):
    ap = argparse.ArgumentParser(prog="roost sim")
    sub = ap.add_subparsers()
    add_kv_parser(sub)
    return ap.parse_args(["kv"] + argv)


def test_json_summary_and_history(tmp_path, capsys):
    hist = tmp_path / "h.jsonl"
    args = _parse(["--clients", "2", "--ops", "20", "--seed", "4", "--json",
                   "--history", str(hist)])
    assert args.func(args) == 0
    s = json.loads(capsys.readouterr().out)
    assert set(s) == KEYS and s["ops"] == 20 and s["linearizable"] is True and s["seed"] == 4
    assert set(s["latency_ms"]) == {"median", "p99"}
    ops = load_history(str(hist))
    assert len(ops) == 20


def test_run_kv_returns_exactly_the_contract():
    s = run_kv(clients=2, ops=10, seed=2)
    assert set(s) == KEYS and s["ok"] + s["failed"] + s["unknown"] == s["ops"]


def test_readable_output(capsys):
    args = _parse(["--clients", "2", "--ops", "15", "--mode", "primary-backup"])
    assert run_kv_cli(args) == 0
    out = capsys.readouterr().out
    assert "kv primary-backup" in out and "linearizable" in out and "{" not in out


def test_bad_arguments_one_sentence_exit_2(capsys):
    for argv in (["--replicas", "0"], ["--mode", "raft"], ["--nemesis", "meteor"],
                 ["--ops", "0"], ["--unsafe-local-reads"], ["--seeds", "5-2"], ["--seeds", "x"],
                 ["--seeds", "1"], ["--seeds", "1-200000"], ["--seeds", "1-3", "--history", "h"],
                 ["--prefer", "n4"], ["--prefer", "n1", "--mode", "primary-backup"],
                 # seeds fold to 32 bits: -1 and 2**32 + 1 would replay seed 0's run
                 ["--seed", "-1"], ["--seed", "4294967297"], ["--seeds", "1-3", "--seed", "2"],
                 ["--seeds", "4294967290-4294967299"]):
        args = _parse(argv)
        assert run_kv_cli(args) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("roost sim kv: ") and err.count("\n") == 0 and err.endswith(".")


def test_non_linearizable_prints_replay_and_exits_1(capsys):
    args = _parse(["--mode", "primary-backup", "--nemesis", "split-vs", "--unsafe-local-reads",
                   "--seed", "1"])
    assert run_kv_cli(args) == 1
    out = capsys.readouterr().out
    assert "NOT linearizable" in out
    assert ("replay: roost sim kv --replicas 3 --clients 4 --ops 200 --nemesis split-vs "
            "--mode primary-backup --unsafe-local-reads --seed 1") in out


def test_a_sweep_of_seeds_prints_only_the_failures_and_a_summary(capsys):
    args = _parse(["--seeds", "1-5", "--clients", "2", "--ops", "30", "--nemesis",
                   "kill,partition,loss"])
    assert run_kv_cli(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["5 seeds (1-5): every history linearizable, every client live after the "
                   "heal; nemesis kill,partition,loss, %s" % out[0].rsplit(", ", 1)[1]]
    # the teaching mode that reads from a cut-off primary fails: each seed with its replay
    args = _parse(["--mode", "primary-backup", "--nemesis", "split-vs", "--unsafe-local-reads",
                   "--seeds", "1-3"])
    assert run_kv_cli(args) == 1
    out = capsys.readouterr().out.strip().splitlines()
    for seed, line in zip((1, 2, 3), out):
        assert line == ("seed %d: not linearizable; replay: roost sim kv --replicas 3 --clients "
                        "4 --ops 200 --nemesis split-vs --mode primary-backup "
                        "--unsafe-local-reads --seed %d" % (seed, seed))
    assert out[3].startswith("3 of 3 seeds (1-3) failed, nemesis split-vs, ")
    args = _parse(["--seeds", "7-8", "--ops", "20", "--json"])
    assert run_kv_cli(args) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["seeds"] == 2 and s["first"] == 7 and s["last"] == 8 and s["failed"] == []


def test_prefer_runs_and_is_in_the_replay_line(capsys):
    args = _parse(["--prefer", "n1", "--nemesis", "kill,restart", "--ops", "60", "--json"])
    assert run_kv_cli(args) == 0
    assert json.loads(capsys.readouterr().out)["linearizable"] is True
    assert _replay(args, ("kill", "restart")) == (
        "roost sim kv --replicas 3 --clients 4 --ops 60 --nemesis kill,restart --prefer n1 "
        "--seed 1")
