"""`roost node` with "discovery": true and `roost broker` on the LAN, across network
namespaces: the nodes find the broker and each other by zeroconf alone (their configs name
no broker and no address), then gossip over UDP and publish through that broker."""

import json
import signal
import sys
import time

from roost.emulator.netns import Fabric

from ._env import CHILD_ENV, ROOT, require

KEY = "discovery-test-key-0123456789"


def _status(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_nodes_find_the_broker_and_each_other_by_zeroconf(tmp_path):
    require("zeroconf")
    env = dict(CHILD_ENV, ROOST_FLEET_KEY=KEY)
    cli = [sys.executable, "-m", "roost.gateway.cli"]
    procs = []
    with Fabric(["brk", "n01", "n02"]) as fab:
        try:
            broker = fab.run_in("brk", cli + ["broker", "--host", "0.0.0.0", "--port", "1883",
                                              "--fleet", "lan", "--dir", str(tmp_path / "b")],
                                env=env, cwd=str(ROOT), stdout=-1, stderr=-1, text=True)
            procs.append(broker)
            lines = [broker.stdout.readline() for _ in range(3)]
            assert any("advertised on the LAN" in ln and "signed with the fleet key" in ln
                       for ln in lines), lines
            for n in ("n01", "n02"):
                d = tmp_path / n
                d.mkdir()
                cfg = {"node_id": n, "fleet": "lan", "udp": ["0.0.0.0", 7001],
                       "members": ["n01", "n02"], "discovery": True, "sensors": "simulated",
                       "storage": str(d / "flash"), "status_file": str(d / "status.json")}
                (d / "node.json").write_text(json.dumps(cfg))
                log = open(d / "node.log", "w")
                procs.append(fab.run_in(n, cli + ["node", "--config", str(d / "node.json")],
                                        env=env, cwd=str(ROOT), stdout=log, stderr=log))
            deadline = time.monotonic() + 60
            ok = {}
            while time.monotonic() < deadline and len(ok) < 2:
                for n in ("n01", "n02"):
                    st = _status(tmp_path / n / "status.json") or {}
                    alive = {m[0] for m in (st.get("host") or {}).get("members", [])
                             if m[1] == "alive"}
                    if (st.get("mqtt") or {}).get("connected") and alive == {"n01", "n02"}:
                        ok[n] = st
                time.sleep(0.5)
            logs = {n: (tmp_path / n / "node.log").read_text() for n in ("n01", "n02")}
            assert len(ok) == 2, logs
            for n, other in (("n01", "n02"), ("n02", "n01")):
                assert "found the broker at mqtt://%s:1883 (zeroconf)" % fab.address("brk") \
                    in logs[n], logs[n]
                assert "found %s at %s:7001 (zeroconf)" % (other, fab.address(other)) \
                    in logs[n], logs[n]
                assert ok[n]["mqtt"]["tx_publish"] > 0  # its readings went to that broker
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(15)
                except Exception:
                    p.kill()
                    p.wait(5)
