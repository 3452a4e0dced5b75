"""``roost build``: the image compiles, its manifest matches, and it imports and boots under
the real micropython with the esp32 profile's heap (CPython drives micropython)."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from roost.emulator.fleet import free_udp_port
from roost.firmware import build

HEAP = build.board_heap("esp32")
NODE_HEAP = 256 * 1024  # what a whole node needs on the 64-bit unix port (docs/benchmarks.md)


def _micropython() -> str:
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython is not installed")
    return exe


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("img") / "esp32"
    build.build("esp32", out)
    return out


def test_manifest_lists_every_file_with_its_hash(image: Path):
    m = build.check_image(image)
    paths = [row[0] for row in m["files"]]
    assert paths == sorted(paths)
    on_disk = sorted(p.relative_to(image).as_posix() for p in image.rglob("*") if p.is_file())
    assert sorted(paths + ["manifest.json"]) == on_disk
    assert "boot.py" in paths and "main.py" in paths and "bootsel.mpy" in paths
    assert "slots/a/roost/firmware/ota.mpy" in paths
    assert not any("build" in p or "vboard" in p or "flash" in p for p in paths)
    assert m["mpy_bytes"] < m["source_bytes"] and m["modules"] > 20
    (image / "slots/a/roost/common/prng.mpy").write_bytes(b"M\x06tampered")
    with pytest.raises(ValueError, match="prng.mpy does not match"):
        build.check_image(image)
    build.build("esp32", image)  # rebuild over an earlier image is allowed
    build.check_image(image)


def test_mpy_version_matches_local_micropython(image: Path):
    _micropython()
    assert build.mpy_header_version(image / "bootsel.mpy") == build.micropython_mpy_version()


def test_every_image_module_imports_alone_under_the_esp32_heap(image: Path):
    exe = _micropython()
    slot = image / "slots" / "a"
    mods = sorted(
        p.relative_to(slot).as_posix()[:-4].replace("/", ".").removesuffix(".__init__")
        for p in slot.rglob("*.mpy")
    )
    script = (
        "import sys, gc\nsys.path.insert(0, %r)\nmod = sys.argv[1]\n"
        "__import__(mod)\ngc.collect()\nprint('OK', mod, gc.mem_free())\n" % str(slot)
    )
    bad = []
    for mod in mods:
        out = subprocess.run([exe, "-X", "heapsize=%d" % HEAP, "-c", script, mod],
                             capture_output=True, text=True, timeout=60, cwd=image)
        if not out.stdout.startswith("OK"):
            bad.append(mod + ": " + (out.stderr or out.stdout)[-300:])
    assert not bad, "\n".join(bad)


def test_mpy_needs_less_heap_than_source(image: Path):
    _micropython()
    mods = ("roost.firmware.boardlib", "roost.firmware.ota", "roost.common.channel")
    src = build.min_heap(build.ROOT, mods, step=4096)
    mpy = build.min_heap(image / "slots" / "a", mods, step=4096)
    assert mpy < src, (mpy, src)


def _boot_and_main(exe: str, flash: Path, extra: str = "") -> str:
    """Run boot.py then boardlib.main (one idle round) the way the board does."""
    script = (
        "g = {'__name__': '__main__'}\n"
        "exec(open('boot.py').read(), g)\n"
        "from roost.firmware import boardlib\n" + extra +
        "print('END', boardlib.main(idle_rounds=1))\n"
    )
    out = subprocess.run([exe, "-X", "heapsize=%d" % HEAP, "-c", script],
                         capture_output=True, text=True, timeout=60, cwd=flash)
    return out.stdout + out.stderr


def test_image_boots_under_the_esp32_heap(image: Path, tmp_path: Path):
    exe = _micropython()
    flash = tmp_path / "flash"
    shutil.copytree(image, flash)
    (flash / "config.json").write_text(json.dumps(
        {"node_id": "n07", "fleet": "lab", "broker": "mqtt://127.0.0.1:1883"}))
    (flash / "secrets.json").write_text(json.dumps({"fleet_key": "k" * 16}))
    out = _boot_and_main(exe, flash)
    # boot.py, the config, Wi-Fi and the watchdog fit; the whole node does not fit the esp32's
    # 100 KB on this 64-bit port (it needs NODE_HEAP): one sentence, then it idles, no loop
    lines = [ln for ln in out.splitlines() if ln.startswith("roost:")]
    assert lines[1:3] == ["roost: started n07"] + [
        ln for ln in lines if ln.startswith("roost: the node does not fit in this board's memory")
    ], out
    assert "END idle" in out and "Traceback" not in out, out
    (flash / "config.json").write_text('{"node_id": "n07", "broker": "http://x"}')
    out = _boot_and_main(exe, flash)
    lines = [ln for ln in out.splitlines() if ln.startswith("roost:")]
    assert lines == ["roost: safe mode: config.json broker 'http://x' must start with "
                     "mqtt:// or mqtts://; fix it and reset the board."], out
    assert "END safe" in out and "Traceback" not in out


def test_whole_node_starts_and_serves_in_the_measured_node_heap(image: Path, tmp_path: Path):
    exe = _micropython()
    flash = tmp_path / "flash"
    shutil.copytree(image, flash)
    (flash / "config.json").write_text(json.dumps(
        {"node_id": "n07", "fleet": "lab", "broker": "mqtt://127.0.0.1:1",
         "udp_port": free_udp_port(),
         "runtime": {"sensors": "simulated", "storage": str(tmp_path / "store")}}))
    (flash / "secrets.json").write_text(json.dumps({"fleet_key": "k" * 16}))
    script = ("g = {'__name__': '__main__'}\nexec(open('boot.py').read(), g)\n"
              "from roost.firmware import boardlib\nboardlib.main()\n")
    p = subprocess.Popen([exe, "-X", "heapsize=%d" % NODE_HEAP, "-c", script], cwd=flash,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(6)  # the node serves: it takes readings and keeps trying the broker
        assert p.poll() is None, p.communicate()[0]
    finally:
        p.terminate()
        out = p.communicate(timeout=10)[0]
    assert "roost: started n07 (boot " in out, out  # a member: boot number from the clock
    assert "Traceback" not in out and "MemoryError" not in out, out


def test_cli_parser_and_user_mistakes(tmp_path: Path, capsys):
    import argparse

    ap = argparse.ArgumentParser()
    build.add_build_parser(ap.add_subparsers())
    args = ap.parse_args(["build", "--board", "esp32", "--out", str(tmp_path / "o"),
                          "--no-measure", "--json"])
    assert args.handler(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["board"] == "esp32" and summary["mpy_bytes"] > 0
    with pytest.raises(ValueError, match="unknown board"):
        build.build("esp8266", tmp_path / "x")
    with pytest.raises(ValueError, match="runs CPython"):
        build.build("pi-4", tmp_path / "x")
    (tmp_path / "notimage").mkdir()
    (tmp_path / "notimage" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no roost image manifest, which is not part"):
        build.build("esp32", tmp_path / "notimage")
    assert (tmp_path / "notimage" / "keep.txt").exists()
    # a project that happens to hold a manifest.json, or an image with the user's files
    # beside it: nothing is deleted
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "manifest.json").write_text('{"name": "my web app"}')
    (proj / "src" / "app.js").write_text("mine")
    with pytest.raises(ValueError, match="holds no roost image manifest"):
        build.build("esp32", proj)
    assert (proj / "src" / "app.js").read_text() == "mine"
    (tmp_path / "o" / "notes").mkdir()
    (tmp_path / "o" / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds notes/, which is not part of a roost image"):
        build.build("esp32", tmp_path / "o")
    shutil.rmtree(tmp_path / "o" / "notes")
    build.build("esp32", tmp_path / "o")  # an earlier image alone is replaced
    with pytest.raises(ValueError, match="no readable manifest"):
        build.check_image(tmp_path / "nowhere")
    assert isinstance(build.report(tmp_path, dict(summary, heap=None), 6), str)


def test_the_heap_measure_reads_a_relative_image_path(image: Path, monkeypatch):
    """`roost build --out build/esp32` (the docs' example) measured an empty directory: it
    runs micropython elsewhere, no module imported, and the report said the boot set fitted."""
    _micropython()
    monkeypatch.chdir(image.parent)
    got = build.measure_heap(Path(image.name) / "slots" / "a", 4 * 1024 * 1024)
    assert "roost.node.runtime" in got["modules"] and not got["out_of_memory_at"], got
