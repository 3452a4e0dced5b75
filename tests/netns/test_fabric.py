"""Root mode for real: namespaces on a bridge, links pulled, partitions, loss, teardown.

Needs root, iproute2 and nftables; skipped with the reason otherwise, except in CI (CI set),
where they must run. Every process is started by the fabric in its own namespaces and
stopped by pid; every wait is bounded.
"""

import os
import subprocess
import sys

import pytest

from roost.emulator import netns
from roost.emulator.netns import Fabric, NetnsError, cleanup_stale, list_namespaces

from ._env import CHILD_ENV, ROOT, require, udp

HOSTS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def fab():
    require("nft")
    with Fabric(HOSTS) as f:
        yield f


@pytest.fixture(autouse=True)
def _healed(request):
    yield
    if "fab" in request.fixturenames:
        request.getfixturevalue("fab").heal()


def _mine(run_id):
    return [ns for ns in list_namespaces() if run_id in ns]


def test_hosts_come_up_with_their_own_addresses(fab):
    assert sorted(_mine(fab.run_id)) == sorted(
        [fab.bridge_ns] + [fab.ns(h) for h in HOSTS])
    assert [fab.address(h) for h in HOSTS] == ["10.213.0.2", "10.213.0.3", "10.213.0.4"]
    # the root namespace got no address in the test subnet
    root_addrs = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    assert "10.213.0." not in root_addrs


def test_every_host_reaches_every_other_over_udp(fab):
    for src in HOSTS:
        for dst in HOSTS:
            if src != dst:
                got, sent = udp(fab, src, dst, n=3)
                assert sent["errors"] == 0 and got == 3, (src, dst, got, sent)


def test_link_down_blocks_udp_and_link_up_restores_it(fab):
    fab.link_down("b")
    got, _ = udp(fab, "a", "b", n=5, seconds=0.8)
    assert got == 0
    got, _ = udp(fab, "b", "c", n=5, seconds=0.8)
    assert got == 0
    got, _ = udp(fab, "a", "c", n=5)
    assert got == 5  # the others still talk
    fab.link_up("b")
    got, _ = udp(fab, "a", "b", n=5)
    assert got == 5


def test_partition_cuts_between_groups_only_and_heal_restores(fab):
    fab.partition([["a", "b"], ["c"]])
    assert udp(fab, "a", "b", n=5)[0] == 5
    assert udp(fab, "a", "c", n=5, seconds=0.8)[0] == 0
    assert udp(fab, "c", "b", n=5, seconds=0.8)[0] == 0
    fab.heal()
    assert udp(fab, "a", "c", n=5)[0] == 5
    assert udp(fab, "c", "b", n=5)[0] == 5


def test_unnamed_hosts_form_one_more_group(fab):
    fab.partition([["a"]])  # b and c together, a alone
    assert fab.groups == [["a"], ["b", "c"]]
    assert udp(fab, "b", "c", n=5)[0] == 5
    assert udp(fab, "b", "a", n=5, seconds=0.8)[0] == 0


def test_a_host_everywhere_hears_every_group(fab):
    """The clients' host in a root-mode fleet stays on every side of a partition."""
    fab.partition([["a"], ["b"]], everywhere=["c"])
    assert fab.groups == [["a"], ["b"]]
    assert udp(fab, "a", "b", n=5, seconds=0.8)[0] == 0
    assert udp(fab, "c", "a", n=5)[0] == 5 and udp(fab, "b", "c", n=5)[0] == 5


def test_a_fabric_attached_from_a_file_saves_back_to_it(fab, tmp_path):
    """roost chaos attaches from the fleet's netns.json: what one command changes, the next
    one must find there (a second partition left the first one's link down)."""
    path = str(tmp_path / "netns.json")
    fab.save(path)
    one = Fabric.attach(path)
    one.link_down("c")
    two = Fabric.attach(path)
    assert two.down == {"c"}
    two.link_up("c")
    assert Fabric.attach(path).down == set()
    assert udp(fab, "a", "c", n=5)[0] == 5


def test_half_loss_drops_about_half_of_400_datagrams(fab):
    got, sent = udp(fab, "a", "b", n=400, seconds=3)
    assert got == 400 and sent["errors"] == 0  # the tools themselves lose nothing
    fab.loss("a", 0.5)
    got, sent = udp(fab, "a", "b", n=400, seconds=1.5)
    assert sent["sent"] + sent["errors"] == 400
    # Binomial(400, 0.5): sd 10; 140..260 is six sd either side
    assert 140 <= got <= 260, got
    fab.loss("a", 0)
    assert udp(fab, "a", "b", n=50)[0] == 50


def test_bad_requests_are_refused(fab):
    with pytest.raises(ValueError):
        fab.link_down("zz")
    with pytest.raises(ValueError):
        fab.loss("a", 1.5)
    with pytest.raises(ValueError):
        fab.partition([["a", "b"], ["b"]])
    with pytest.raises(ValueError):
        Fabric(["A b"])
    with pytest.raises(ValueError):
        Fabric(["a", "a"])


def test_another_process_attaches_and_pulls_a_link(fab):
    # what `roost chaos` does: a separate process acts on the running fabric by its state file
    code = "from roost.emulator.netns import Fabric; Fabric.attach(%r).link_down('c')" % (
        fab.run_id,)
    subprocess.run([sys.executable, "-c", code], env=CHILD_ENV, cwd=str(ROOT), check=True,
                   timeout=30)
    assert udp(fab, "a", "c", n=5, seconds=0.8)[0] == 0
    fab2 = Fabric.attach(fab.run_id)
    assert fab2.down == {"c"} and fab2.address("c") == fab.address("c")
    fab2.link_up("c")
    assert udp(fab, "a", "c", n=5)[0] == 5


def test_teardown_leaves_nothing_and_stops_its_processes():
    require("nft")
    with Fabric(["x", "y"]) as f:
        run = f.run_id
        p = f.run_in("x", ["sleep", "300"])
        f.partition([["x"], ["y"]])
        assert len(_mine(run)) == 3
        assert os.path.exists(f.state_path)
    assert _mine(run) == []
    assert p.poll() is not None  # stopped by its pid
    assert not os.path.exists(f.state_path)
    with pytest.raises(NetnsError):
        Fabric.attach(run)


def test_teardown_also_happens_when_the_body_fails():
    require()
    run = None
    with pytest.raises(KeyError):
        with Fabric(["x"]) as f:
            run = f.run_id
            raise KeyError("boom")
    assert run and _mine(run) == []


def test_cleanup_removes_runs_whose_owner_is_gone_and_keeps_live_ones():
    require()
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=10)
    stale = Fabric(["x"], owner_pid=gone.pid)
    live = Fabric(["x"])
    try:
        removed = cleanup_stale()
        # (runs that earlier crashed test sessions left behind may go too)
        assert {stale.bridge_ns, stale.ns("x")} <= set(removed)
        assert not {live.bridge_ns, live.ns("x")} & set(removed)
        assert _mine(stale.run_id) == []
        assert len(_mine(live.run_id)) == 2
    finally:
        stale.teardown()
        live.teardown()
    assert _mine(live.run_id) == []


def test_missing_tools_names_what_root_mode_lacks(monkeypatch):
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert netns.missing_tools() == ["root", "ip", "nft"]
    with pytest.raises(NetnsError):
        Fabric(["x"])


def test_run_node_in_passes_env_and_runs_in_the_host(fab):
    p = fab.run_node_in("b", [sys.executable, "-c",
                              "import os, socket; s = socket.socket(socket.AF_INET, "
                              "socket.SOCK_DGRAM); s.bind((os.environ['ROOST_ADDR'], 0)); "
                              "print(os.environ['ROOST_NODE'], os.getsid(0) == os.getpid())"],
                        env={"ROOST_NODE": "n02", "ROOST_ADDR": fab.address("b")},
                        stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    # bound to b's address: only possible inside b; its own session: Ctrl-C stays with us
    assert (p.returncode, out.split()) == (0, ["n02", "True"])
    r = subprocess.run(fab.wrap("c", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]),
                       capture_output=True, text=True, timeout=30)
    assert fab.address("c") + "/24" in r.stdout


def test_command_line_lists_shows_and_tears_down():
    require()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "roost.emulator.netns"] + list(args),
                              env=CHILD_ENV, cwd=str(ROOT), capture_output=True, text=True,
                              timeout=60)

    f = Fabric(["x"])
    try:
        assert f.run_id in cli("list").stdout.split()
        r = cli("show", f.run_id)
        assert r.returncode == 0 and '"x": "10.213.0.2"' in r.stdout
        assert cli("down", f.run_id).stdout.strip() == "removed 2 namespaces"
        assert _mine(f.run_id) == []
        r = cli("show", f.run_id)
        assert r.returncode == 2 and r.stderr.startswith("error: no fabric state")
    finally:
        f.teardown()
