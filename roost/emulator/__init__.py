"""emulator: the deterministic simulator and the process fleet (CPython)."""
