"""The gateway's view of a fleet through the broker (pure part; the live part runs in
tests/fleet/test_fleet.py against real node processes and a real broker)."""

from roost.gateway.gateway import FleetView


def test_status_and_readings_per_node_and_bad_input_counted():
    v = FleetView("lab")
    v.on_message(10.0, "roost/lab/node/n01/status", b"online")
    v.on_message(11.0, "roost/lab/node/n01/data", b'{"sensor": "t", "values": {"t": 21.5}}')
    v.on_message(12.0, "roost/lab/node/n02/status", b"offline")
    v.on_message(13.0, "roost/lab/node/n01/status", b"online")  # no change: since stays
    v.on_message(13.0, "roost/lab/node/n01/data", b"not json")
    v.on_message(13.0, "roost/lab/node/n01/data", b"[1, 2]")
    v.on_message(13.0, "roost/lab/node/n01/status", b"rebooting")
    v.on_message(13.0, "roost/other/node/n09/status", b"online")
    v.on_message(13.0, "roost/lab/node/n01/inbox", b"\x00")
    doc = v.to_json(15.0, True)
    n1, n2 = doc["nodes"]["n01"], doc["nodes"]["n02"]
    assert (n1["mqtt"], n1["since"], n1["readings"]) == ("online", 10.0, 1)
    assert n1["last_reading"]["values"] == {"t": 21.5} and n1["last_reading_age_s"] == 4.0
    assert (n2["mqtt"], n2["readings"], n2["last_reading_age_s"]) == ("offline", 0, None)
    assert doc["stats"] == {"messages": 9, "readings": 1, "ignored": 2, "malformed": 3}
    assert sorted(doc["nodes"]) == ["n01", "n02"] and doc["broker_connected"] is True
    v.on_message(20.0, "roost/lab/node/n02/status", b"online")  # plugged back in
    assert v.to_json(21.0, True)["nodes"]["n02"]["since"] == 20.0


def test_invented_node_ids_are_refused_and_the_view_stays_bounded():
    """Anyone who may publish on the broker can name nodes: a bad id is malformed, and past
    MAX_NODES new ones are ignored, so the gateway's memory does not grow with them."""
    v = FleetView("lab")
    v.on_message(1.0, "roost/lab/node/bad id!/status", b"online")
    v.on_message(1.0, "roost/lab/node/" + "x" * 300 + "/data", b"{}")
    assert v.nodes == {} and v.stats["malformed"] == 2
    for i in range(FleetView.MAX_NODES + 50):
        v.on_message(2.0, "roost/lab/node/n%d/status" % i, b"online")
    assert len(v.nodes) == FleetView.MAX_NODES and v.stats["ignored"] == 50
    v.on_message(3.0, "roost/lab/node/n1/status", b"offline")  # a known node still counts
    assert v.nodes["n1"]["mqtt"] == "offline"


def test_a_reading_nested_too_deep_or_too_large_is_malformed_and_the_view_still_writes():
    """A reading nested ~990 levels deep loaded, then killed the gateway writing its view
    (RecursionError in json.dumps); deeper ones raised inside on_message."""
    import json

    v = FleetView("lab")
    for depth in (9, 990, 5000):
        v.on_message(1.0, "roost/lab/node/n01/data", b'{"a":' * depth + b"1" + b"}" * depth)
    v.on_message(1.0, "roost/lab/node/n01/data", b'{"pad": "%s"}' % (b"x" * 20000))
    v.on_message(2.0, "roost/lab/node/n01/data", b'{"a": {"b": {"c": [1, [2]]}}}')
    doc = v.to_json(3.0, True)
    assert doc["stats"]["malformed"] == 4 and doc["stats"]["readings"] == 1
    assert doc["nodes"]["n01"]["last_reading"] == {"a": {"b": {"c": [1, [2]]}}}
    json.dumps(doc)
