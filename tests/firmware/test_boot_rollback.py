"""boot.py under the real micropython: an update on trial whose code does not load rolls
back to the slot before it and resets (it printed "safe mode ... flash it again" and sat
on trial until two power cycles; a bundle missing a module did that too)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

FW = Path(__file__).resolve().parents[2] / "roost" / "firmware"


def _flash(d: Path, state: list) -> None:
    shutil.copy(FW / "esp32" / "boot.py", d / "boot.py")
    shutil.copy(FW / "bootsel.py", d / "bootsel.py")
    (d / "machine.py").write_text("def reset():\n    print('RESET')\n    raise SystemExit\n")
    pkg = d / "slots" / "b" / "roost" / "firmware"
    pkg.mkdir(parents=True)
    (d / "slots" / "a").mkdir()
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "boardlib.py").write_text("raise RuntimeError('this update is broken')\n")
    (d / "slots" / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("trial", [1, -1])
def test_code_on_trial_that_does_not_load_rolls_back(tmp_path, trial):
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython is not installed")
    _flash(tmp_path, ["b", "a", trial, 7, "v7"])
    out = subprocess.run([exe, "boot.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60).stdout
    st = json.loads((tmp_path / "slots" / "state.json").read_text())
    if trial == -1:  # confirmed code: nothing to go back to by itself, safe mode says so
        assert "safe mode: the node image in slot b does not load" in out and "RESET" not in out
        assert st[:3] == ["b", "a", -1]
    else:
        assert "roost: update v7 cannot start in slot b; rolled back to slot a" in out, out
        assert "RESET" in out and st[:3] == ["a", "b", -1]
