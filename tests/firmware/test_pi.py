"""The Pi service unit parses (systemd-analyze verify when present, a small parser always)
and runs the roost command; install.sh is valid shell."""

import configparser
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PI = ROOT / "roost" / "firmware" / "pi"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=True, interpolation=None)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read_string((PI / "roost-node.service").read_text())
    return cp


def test_unit_has_the_right_shape():
    u = _unit()
    assert u.sections() == ["Unit", "Service", "Install"]
    s = u["Service"]
    assert s["Restart"] == "always" and s["User"] == "roost" and s["User"] != "root"
    argv = shlex.split(s["ExecStart"])
    assert argv[0].startswith("/") and Path(argv[0]).name == "roost"
    assert argv[1:] == ["node", "--config", "/etc/roost/node.json"]
    assert "StartLimitBurst" in u["Unit"] and u["Install"]["WantedBy"] == "multi-user.target"


def test_unit_names_the_roost_command():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["roost"] == "roost.gateway.cli:main"
    from roost.gateway import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    if "node" in sub.choices:  # `roost node` lands with the node runtime
        args = parser.parse_args(["node", "--config", "/etc/roost/node.json"])
        assert callable(args.handler)


def test_systemd_analyze_verify(tmp_path: Path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return  # the parser test above covers the shape; verify runs where systemd is
    text = (PI / "roost-node.service").read_text()
    # verify checks that ExecStart exists: point it at this interpreter for the check
    text = text.replace("/opt/roost/venv/bin/roost", sys.executable)
    unit = tmp_path / "roost-node.service"
    unit.write_text(text)
    out = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                if "roost-node.service" in ln and "Documentation" not in ln]
    assert not problems, problems


def test_install_script_is_valid_shell_and_refuses_without_root_or_args():
    sh = shutil.which("sh")
    assert sh is not None
    assert subprocess.run([sh, "-n", str(PI / "install.sh")], timeout=30).returncode == 0
    out = subprocess.run([sh, str(PI / "install.sh"), "--bogus", "x"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "unknown option --bogus" in out.stderr


def test_install_script_takes_the_node_from_a_plan(tmp_path: Path):
    """It refuses, with one sentence, before touching the system: without a plan, with a
    folder that holds none, without a node id (root is checked after these)."""
    sh = shutil.which("sh")
    script = str(PI / "install.sh")

    def run(*args):
        return subprocess.run([sh, script, *args], capture_output=True, text=True, timeout=30)

    out = run("--node-id", "n01")
    assert out.returncode == 2 and "give --plan DIR" in out.stderr
    out = run("--plan", str(tmp_path), "--node-id", "n01")
    assert out.returncode == 2 and "holds no plan" in out.stderr
    from roost.gateway.plan import make

    make(tmp_path / "class", "class", "mqtt://192.168.4.1:1883",
         [("n01", "pi-zero-2w"), ("n02", "pi-zero-2w"), ("n03", "esp32-wrover")], key="k" * 32)
    out = run("--plan", str(tmp_path / "class"))
    assert out.returncode == 2 and "give --node-id" in out.stderr
    out = run("--plan", str(tmp_path / "class"), "--node-id")
    assert out.returncode == 2 and "--node-id needs a value" in out.stderr, out.stderr
    out = run("--plan", str(tmp_path / "class"), "--node-id", "n09")  # before apt and pip
    assert out.returncode == 2 and "has no node n09" in out.stderr, out.stderr
    # what it installs as /etc/roost/node.json is what this command prints
    text = (PI / "install.sh").read_text()
    assert 'roost plan --dir "$PLAN" --node-config "$NODE_ID"' in text
