"""Benchmark: does the 64-bit unix port overstate the heap a 32-bit board needs for our code?

The same .mpy files (the node's cores, compiled once by mpy-cross) are imported one module at
a time under the 64-bit unix port and under MicroPython's 32-bit WebAssembly port (run by
Node.js), and the heap each import keeps (gc.mem_alloc after gc.collect) is printed side by
side. Modules that need sockets (mqtt, nodemain) are left out: the WebAssembly port has none.

    mkdir -p /tmp/mpwasm && cd /tmp/mpwasm
    npm install @micropython/micropython-webassembly-pyscript@1.27.0 && cd -
    python bench/bench_wordsize.py --wasm-dir /tmp/mpwasm
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODS = ["roost.common.envelope", "roost.common.channel", "roost.common.prng",
        "roost.common.config", "roost.common.jsonpieces", "roost.node.effects",
        "roost.node.gossip", "roost.node.paxos", "roost.node.kv", "roost.node.storage",
        "roost.node.mqtt_codec", "roost.node.host", "roost.node.runtime"]

# Runs under both ports: one line per module, "name kept_bytes" (or "name failed: why").
MEASURE = """
import gc
for m in %r:
    gc.collect()
    b = gc.mem_alloc()
    try:
        __import__(m)
        gc.collect()
        print(m, gc.mem_alloc() - b)
    except Exception as e:
        print(m, 'failed:', repr(e))
"""

# Node.js (also bench_heap32.py's): copy a directory tree into the port's file system
WASM_COPY = """
function copy(from, to) {
  mp.FS.mkdirTree(to);
  for (const e of fs.readdirSync(from, {withFileTypes: true})) {
    const p = path.join(from, e.name);
    if (e.isDirectory()) copy(p, to + "/" + e.name);
    else mp.FS.writeFile(to + "/" + e.name, fs.readFileSync(p));
  }
}
"""

# Node.js: load the WebAssembly port, copy the .mpy tree into its file system, run MEASURE.
RUN_WASM = """
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "fs"; import path from "path";
const [src, code] = [process.argv[2], fs.readFileSync(process.argv[3], "utf8")];
const mp = await loadMicroPython({heapsize: 4 * 1024 * 1024,
                                   stdout: (d) => process.stdout.write(d + "\\n")});
""" + WASM_COPY + """
copy(src, "/lib/roost");
mp.runPython("import sys; sys.path.insert(0, '/lib')");
mp.runPython(code);
"""


def _parse(out: str) -> dict:
    res = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in MODS:
            res[parts[0]] = int(parts[1]) if parts[1].isdigit() else parts[1]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm-dir", required=True,
                    help="a directory where @micropython/micropython-webassembly-pyscript "
                    "is installed with npm")
    a = ap.parse_args()
    from roost.emulator import fleet

    if not (Path(a.wasm_dir) / "node_modules" / "@micropython").is_dir():
        print("no @micropython/micropython-webassembly-pyscript under %s (see the docstring)"
              % a.wasm_dir)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        mpy = Path(tmp) / "mpy"
        if not fleet.compile_mpy(mpy):
            print("mpy-cross is not installed")
            return 2
        code = MEASURE % (MODS,)
        (Path(tmp) / "measure.py").write_text(code)
        unix = subprocess.run(["micropython", "-X", "heapsize=4M", str(Path(tmp) / "measure.py")],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "MICROPYPATH": "%s:.frozen" % mpy})
        runner = Path(a.wasm_dir) / "roost_wordsize.mjs"
        runner.write_text(RUN_WASM)
        try:
            wasm = subprocess.run([shutil.which("node") or "node", str(runner),
                                   str(mpy / "roost"), str(Path(tmp) / "measure.py")],
                                  capture_output=True, text=True, timeout=120)
        finally:
            runner.unlink()
    u, w = _parse(unix.stdout), _parse(wasm.stdout)
    tu = tw = 0
    print("%-24s %12s %12s" % ("module (.mpy)", "64-bit unix", "32-bit wasm"))
    for m in MODS:
        print("%-24s %12s %12s" % (m, u.get(m), w.get(m)))
        if isinstance(u.get(m), int) and isinstance(w.get(m), int):
            tu, tw = tu + u[m], tw + w[m]
    print("imports kept, bytes: 64-bit %d, 32-bit %d (32/64 = %.2f)" % (tu, tw, tw / tu))
    print(json.dumps({"unix64": tu, "wasm32": tw}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
