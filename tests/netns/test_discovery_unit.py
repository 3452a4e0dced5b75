"""Discovery without a network: seeds, TXT checks, and hostile records (no root needed)."""

import os

import pytest

try:
    import zeroconf  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs it (a project dependency); locally: pip install zeroconf
    pytest.skip("zeroconf not installed", allow_module_level=True)

from roost.gateway import discovery  # noqa: E402
from roost.gateway.discovery import Peer, parse_seed  # noqa: E402


class FakeInfo:
    def __init__(self, props, port=7001, addrs=("10.213.0.9",)):
        self.properties = props
        self.port = port
        self._addrs = list(addrs)

    def parsed_addresses(self, version=None):
        return self._addrs


def test_parse_seed():
    assert parse_seed("n01@10.0.0.5:7001") == Peer("n01", "10.0.0.5", 7001, {}, "seed")
    assert parse_seed("gw@pi.local:7000").address == "pi.local"
    for bad in ("n01", "n01@host", "@h:1", "n 1@h:1", "n01@h:0", "n01@h:99999", "n01@:7"):
        with pytest.raises(ValueError):
            parse_seed(bad)


def test_seed_lists_and_dicts_sort_by_id():
    got = discovery._seed_peers(["n02@b:2", "n01@a:1"])
    assert [p.id for p in got] == ["n01", "n02"]
    got = discovery._seed_peers({"n03": ("c", 3), "n01": ("a", 1)})
    assert [(p.id, p.address, p.port) for p in got] == [("n01", "a", 1), ("n03", "c", 3)]
    with pytest.raises(ValueError):
        discovery._seed_peers("n01@a:1")


def test_good_record_becomes_a_peer():
    info = FakeInfo({b"fleet": b"attic", b"id": b"n01", b"role": b"node", b"flag": None})
    p = discovery._peer_from(info, "attic", {})
    assert p == Peer("n01", "10.213.0.9", 7001,
                     {"fleet": "attic", "id": "n01", "role": "node", "flag": ""}, "mdns")


@pytest.mark.parametrize("info,reason", [
    (FakeInfo({b"fleet": b"cellar", b"id": b"n01"}), "other_fleet"),
    (FakeInfo({b"id": b"n01"}), "other_fleet"),
    (FakeInfo({b"fleet": b"attic", b"id": b"bad id!"}), "bad_id"),
    (FakeInfo({b"fleet": b"attic"}), "bad_id"),
    (FakeInfo({b"fleet": b"attic", b"id": b"x" * 40}), "bad_id"),
    (FakeInfo({b"fleet": b"attic", b"id": b"\xff\xfe"}), "malformed"),
    (FakeInfo(None), "other_fleet"),
    (FakeInfo({b"fleet": b"attic", b"id": b"n01"}, port=0), "bad_port"),
    (FakeInfo({b"fleet": b"attic", b"id": b"n01"}, port=None), "bad_port"),
    (FakeInfo({b"fleet": b"attic", b"id": b"n01"}, addrs=()), "no_address"),
])
def test_hostile_records_are_counted_not_raised(info, reason):
    stats = {}
    assert discovery._peer_from(info, "attic", stats) is None
    assert stats == {"rx_rejected_" + reason: 1}


def test_txt_items_are_checked():
    assert discovery._txt({"b": 2, "a": None}) == {"a": "", "b": "2"}
    with pytest.raises(ValueError):
        discovery._txt({"k": "v" * 300})
    with pytest.raises(ValueError):
        discovery._txt({"a=b": "c"})


def test_local_mistakes_raise_before_touching_the_network(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("no network for a bad call")

    monkeypatch.setattr(discovery, "_zeroconf", boom)
    with pytest.raises(ValueError):
        discovery.advertise("bad id", "attic", 7001)
    with pytest.raises(ValueError):
        discovery.advertise("n01", "attic", 70000)
    with pytest.raises(ValueError):
        discovery.advertise("n01", "attic", 7001, role="king")
    with pytest.raises(ValueError):
        discovery.advertise("n01", "attic", 7001, props={"k": "v" * 300})
    with pytest.raises(ValueError):
        discovery.browse("attic", 1.0, seeds=["garbage"])
    with pytest.raises(ValueError):
        discovery.browse("attic", 0)
    with pytest.raises(ValueError):
        discovery.find_broker(1.0, seeds=["10.0.0.1"])
    with pytest.raises(ValueError):
        discovery.advertise_broker(0)


def test_interface_names_map_to_their_addresses(monkeypatch):
    monkeypatch.setattr(discovery, "_adapters", lambda: [
        ("eth0", "10.213.0.2", 24), ("lo", "127.0.0.1", 8)])
    assert discovery.interface_addresses() == ["10.213.0.2"]
    assert discovery.interface_addresses(["lo"]) == ["127.0.0.1"]
    assert discovery.interface_addresses(["192.168.1.4"]) == ["192.168.1.4"]
    with pytest.raises(ValueError):
        discovery.interface_addresses(["wlan9"])
    monkeypatch.setattr(discovery, "_adapters", lambda: [("lo", "127.0.0.1", 8)])
    assert discovery.interface_addresses() == ["127.0.0.1"]


def test_address_on_our_network_is_preferred(monkeypatch):
    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    assert discovery._pick_address(["172.17.0.5", "10.213.0.7"]) == "10.213.0.7"
    assert discovery._pick_address(["172.17.0.5", "172.16.0.1"]) == "172.16.0.1"
    assert discovery._pick_address([]) is None


def test_addresses_no_peer_can_have_are_never_taken(monkeypatch):
    """A forged record must not send a node to itself or to the mDNS group."""
    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    assert discovery._pick_address(["127.0.0.1", "224.0.0.251", "0.0.0.0"]) is None
    assert discovery._pick_address(["224.0.0.251", "10.213.0.9"]) == "10.213.0.9"


def test_an_answer_adds_peers_and_the_seeds_stay(monkeypatch):
    """mDNS has no authentication: one (perhaps forged) record must not take the configured
    seeds away; a seed the LAN also answers for is taken from the answer."""
    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    forged = FakeInfo({b"fleet": b"attic", b"id": b"n09"}, addrs=["10.213.0.66"])
    real = FakeInfo({b"fleet": b"attic", b"id": b"n01"}, addrs=["10.213.0.5"])
    monkeypatch.setattr(discovery, "_browse_type", lambda *a: [forged, real])
    got = discovery.browse("attic", 0.1, seeds=["n01@10.0.0.5:7001", "n02@10.0.0.6:7001"])
    assert [(p.id, p.address, p.source) for p in got] == [
        ("n01", "10.213.0.5", "mdns"), ("n02", "10.0.0.6", "seed"), ("n09", "10.213.0.66", "mdns")]


def test_the_record_under_a_nodes_own_name_wins_over_one_that_claims_its_id(monkeypatch):
    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    forged = FakeInfo({b"fleet": b"attic", b"id": b"n02"}, addrs=["10.213.0.66"])
    forged.name = "aaa._roost._udp.local."  # sorts first
    real = FakeInfo({b"fleet": b"attic", b"id": b"n02"}, addrs=["10.213.0.5"])
    real.name = "attic-n02._roost._udp.local."
    monkeypatch.setattr(discovery, "_browse_type", lambda *a: [forged, real])
    assert [(p.id, p.address) for p in discovery.browse("attic", 0.1)] == [("n02", "10.213.0.5")]


def test_a_tls_broker_of_our_fleet_comes_before_a_plain_one(monkeypatch):
    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    infos = [FakeInfo({b"fleet": b"attic", b"tls": b"0"}, port=1883, addrs=["10.213.0.5"]),
             FakeInfo({b"fleet": b"attic", b"tls": b"1"}, port=8883, addrs=["10.213.0.7"])]
    assert discovery._broker_urls(infos, "attic", None) == [
        "mqtts://10.213.0.7:8883", "mqtt://10.213.0.5:1883"]


def test_broker_urls_put_our_fleet_first_and_skip_other_fleets(monkeypatch):
    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    infos = [
        FakeInfo({b"tls": b"0"}, port=1883, addrs=["10.213.0.5"]),            # a plain broker
        FakeInfo({b"fleet": b"cellar"}, port=1883, addrs=["10.213.0.6"]),     # someone else's
        FakeInfo({b"fleet": b"attic", b"tls": b"1"}, port=8883, addrs=["10.213.0.7"]),
        FakeInfo({b"fleet": b"attic"}, port=1883, addrs=[]),                  # no address
        FakeInfo({b"\xff": b"x"}, port=1883),                                 # not UTF-8
    ]
    stats = {}
    assert discovery._broker_urls(infos, "attic", stats) == [
        "mqtts://10.213.0.7:8883", "mqtt://10.213.0.5:1883"]
    assert stats == {"rx_rejected_other_fleet": 1, "rx_rejected_no_address": 1,
                     "rx_rejected_malformed": 1}
    # without a fleet every broker with an address counts, in the order seen
    assert discovery._broker_urls(infos[:3], None, None) == [
        "mqtt://10.213.0.5:1883", "mqtt://10.213.0.6:1883", "mqtts://10.213.0.7:8883"]


def _signed(fleet, port, tls, addrs, key="k" * 32, a_records=None):
    props = {b"fleet": fleet.encode(), b"tls": tls.encode(), b"addr": ",".join(addrs).encode(),
             b"sig": discovery.broker_sig(key, fleet, port, tls, ",".join(addrs)).encode()}
    return FakeInfo(props, port=port, addrs=a_records or addrs)


def test_a_node_with_a_password_takes_only_a_broker_record_signed_with_its_key(monkeypatch):
    # anyone on the LAN can answer mDNS: a forged broker record would collect the password
    # of every node that logs in to it. Records signed with the fleet key come first, at
    # the addresses they sign (an A record someone else added for the name is not taken)
    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    key = "k" * 32
    good = _signed("attic", 1883, "0", ["10.213.0.5"], a_records=["10.213.0.66", "10.213.0.5"])
    forged = _signed("attic", 1883, "0", ["10.213.0.66"], key="someone-else's-key!")
    moved = _signed("attic", 1883, "0", ["10.213.0.5"])
    moved.properties[b"addr"] = b"10.213.0.66"  # the addresses changed, the signature not
    unsigned = FakeInfo({b"fleet": b"attic", b"tls": b"0"}, port=1884, addrs=["10.213.0.7"])
    stats = {}
    assert discovery._broker_urls([unsigned, forged, moved, good], "attic", stats, key,
                                  signed_only=True) == ["mqtt://10.213.0.5:1883"]
    assert stats == {"rx_rejected_unsigned": 1, "rx_rejected_bad_signature": 2}
    # without a password an unsigned record is taken, after the signed ones
    assert discovery._broker_urls([unsigned, good], "attic", None, key) == [
        "mqtt://10.213.0.5:1883", "mqtt://10.213.0.7:1884"]
    # a signature that is no 32 hex digits is refused, not compared (a non-ASCII one made
    # compare_digest raise, and every node with discovery failed to start)
    stats = {}
    for bad in ("é" * 32, "é", "AB" * 16, "0" * 31):
        odd = _signed("attic", 1883, "0", ["10.213.0.5"])
        odd.properties[b"sig"] = bad.encode()
        assert discovery._broker_urls([odd], "attic", stats, key, signed_only=True) == []
    assert stats == {"rx_rejected_bad_signature": 4}
    # and a node without the key (the command line's find-broker) reads records as before
    assert discovery._broker_urls([good], "attic", None) == ["mqtt://10.213.0.5:1883"]


def test_roost_node_gives_its_password_to_no_unsigned_broker_and_says_so(monkeypatch):
    from roost.gateway import node_cmd

    monkeypatch.setattr(discovery, "_adapters", lambda: [("eth0", "10.213.0.2", 24)])
    monkeypatch.setattr(discovery, "advertise", lambda *a, **k: None)
    key = "k" * 32
    unsigned = FakeInfo({b"fleet": b"attic", b"tls": b"0"}, port=1883, addrs=["10.213.0.66"])
    records = {discovery.MQTT_TYPE: [unsigned], discovery.ROOST_TYPE: []}
    monkeypatch.setattr(discovery, "_browse_type", lambda t, *a: records[t])
    cfg = {"node_id": "n01", "fleet": "attic", "key": key, "mqtt_password": "pw",
           "udp": ["0.0.0.0", 0]}
    said = []
    node_cmd.discover(cfg, said.append, 0.1)
    assert "brokers" not in cfg
    assert said == ["roost: ignored 1 broker record unsigned (this node logs in with a "
                    "password: start the broker with --plan DIR or ROOST_FLEET_KEY set)"]
    records[discovery.MQTT_TYPE] = [unsigned, _signed("attic", 1883, "0", ["10.213.0.5"])]
    said.clear()
    node_cmd.discover(cfg, said.append, 0.1)
    assert cfg["brokers"] == ["mqtt://10.213.0.5:1883"]
    assert said[0] == "roost: found the broker at mqtt://10.213.0.5:1883 (zeroconf)"


def test_a_broker_with_more_addresses_than_a_signed_record_holds_is_still_advertised(
        monkeypatch, capsys):
    # a host with container bridges and VPNs: ~20 addresses do not fit one 255-byte TXT
    # item. Before, the signed record raised and the broker was not advertised at all; now
    # it goes out unsigned, and says why
    addrs = ["172.%d.0.1" % (16 + i) for i in range(16)] + ["192.168.%d.1" % i
                                                           for i in range(100, 106)]
    monkeypatch.setattr(discovery, "_adapters", lambda: [("if%d" % i, a, 16)
                                                         for i, a in enumerate(addrs)])
    got = {}
    monkeypatch.setattr(discovery, "_register", lambda t, n, srv, port, txt, i, a: got.update(
        txt=txt, addrs=a))
    discovery.advertise_broker(1883, fleet="attic", key="k" * 32)
    assert "sig" not in got["txt"] and len(got["addrs"]) == 22
    assert "advertised unsigned" in capsys.readouterr().err
    discovery.advertise_broker(1883, fleet="attic", key="k" * 32, addresses=["10.0.0.2"])
    assert got["txt"]["addr"] == "10.0.0.2" and len(got["txt"]["sig"]) == 32
