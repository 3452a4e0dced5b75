"""Zeroconf discovery for real across network namespaces (root, iproute2, zeroconf).

A process in one namespace advertises, a process in another browses: the only path between
them is the fabric's bridge, so what is found was found over multicast DNS on that link.
"""

import signal

import pytest

from roost.emulator.netns import Fabric

from ._env import finish, py, require

DISC = ["-m", "roost.gateway.discovery"]


@pytest.fixture(scope="module")
def fab():
    require("zeroconf")
    with Fabric(["node", "gw", "brk", "other", "probe"]) as f:
        yield f


@pytest.fixture(scope="module")
def adverts(fab):
    """A node, the gateway and the broker of fleet "attic", and a node of another fleet."""
    procs = [
        py(fab, "node", DISC + ["advertise", "--fleet", "attic", "--id", "n01", "--port", "7001",
                                "--board", "esp32", "--prop", "zone=loft"]),
        py(fab, "gw", DISC + ["advertise", "--fleet", "attic", "--id", "gw", "--port", "7000",
                              "--role", "gateway"]),
        py(fab, "brk", DISC + ["broker", "--fleet", "attic", "--port", "1883"]),
        py(fab, "other", DISC + ["advertise", "--fleet", "cellar", "--id", "n09",
                                 "--port", "7009"]),
    ]
    for p in procs:
        line = p.stdout.readline()
        assert line.startswith("advertising"), (line, p.stderr.read() if p.poll() else "")
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.communicate(timeout=10)


def _browse(fab, *args, timeout="6"):
    return finish(py(fab, "probe", DISC + ["browse", "--timeout", timeout, "--json"]
                     + list(args)))


def test_browse_finds_the_fleet_with_its_txt_properties(fab, adverts):
    out = _browse(fab, "--fleet", "attic", "--expect", "2")
    peers = {p["id"]: p for p in out["peers"]}
    assert sorted(peers) == ["gw", "n01"]
    n01 = peers["n01"]
    assert (n01["address"], n01["port"], n01["source"]) == (fab.address("node"), 7001, "mdns")
    assert n01["props"] == {"v": "1", "fleet": "attic", "id": "n01", "role": "node",
                            "port": "7001", "board": "esp32", "zone": "loft"}
    assert peers["gw"]["props"]["role"] == "gateway"
    assert peers["gw"]["address"] == fab.address("gw")


def test_another_fleet_is_not_mixed_in(fab, adverts):
    out = _browse(fab, "--fleet", "cellar", "--expect", "1")
    assert [(p["id"], p["address"]) for p in out["peers"]] == [("n09", fab.address("other"))]
    # listening the whole time: the attic's records arrive too and are counted, not returned
    out = _browse(fab, "--fleet", "cellar", timeout="3")
    assert [p["id"] for p in out["peers"]] == ["n09"]
    assert out["stats"].get("rx_rejected_other_fleet", 0) >= 2


def test_find_broker_returns_its_url(fab, adverts):
    out = finish(py(fab, "probe", DISC + ["find-broker", "--fleet", "attic", "--timeout", "6",
                                          "--expect", "1", "--json"]))
    assert out["brokers"] == ["mqtt://%s:1883" % fab.address("brk")]


def test_a_pulled_link_means_seeds(fab, adverts):
    fab.link_down("probe")
    try:
        out = _browse(fab, "--fleet", "attic", "--seed", "n01@10.9.9.9:7001", timeout="2")
        assert out["peers"] == [{"id": "n01", "address": "10.9.9.9", "port": 7001,
                                 "props": {}, "source": "seed"}]
        out = finish(py(fab, "probe", DISC + ["find-broker", "--timeout", "1.5", "--json",
                                              "--seed", "mqtt://10.9.9.9:1883"]))
        assert out["brokers"] == ["mqtt://10.9.9.9:1883"]
    finally:
        fab.link_up("probe")


def test_nothing_answers_gives_the_seeds_and_no_seeds_gives_nothing():
    require("zeroconf")
    with Fabric(["alone", "quiet"]) as f:
        out = finish(py(f, "alone", DISC + ["browse", "--fleet", "attic", "--timeout", "1.5",
                                            "--json", "--seed", "n02@10.0.0.2:7001",
                                            "--seed", "n01@10.0.0.1:7001"]))
        assert [(p["id"], p["source"]) for p in out["peers"]] == [("n01", "seed"),
                                                                  ("n02", "seed")]
        out = finish(py(f, "alone", DISC + ["browse", "--fleet", "attic", "--timeout", "1",
                                            "--json"]))
        assert out["peers"] == []


def test_a_stopped_node_is_no_longer_found(fab):
    p = py(fab, "node", DISC + ["advertise", "--fleet", "loft", "--id", "n05", "--port", "7005"])
    assert p.stdout.readline().startswith("advertising")
    assert [x["id"] for x in _browse(fab, "--fleet", "loft", "--expect", "1")["peers"]] == ["n05"]
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=10)
    assert _browse(fab, "--fleet", "loft", timeout="1.5")["peers"] == []


def test_cli_mistake_is_one_sentence(fab):
    p = py(fab, "probe", DISC + ["browse", "--fleet", "attic", "--seed", "nonsense",
                                 "--timeout", "1"])
    out, err = p.communicate(timeout=20)
    assert p.returncode == 2 and err.startswith("roost discover: seed 'nonsense'"), err
