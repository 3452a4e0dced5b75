# roost boot.py: runs at every reset, and at every soft reset (mpremote does one before its
# commands; then main.py is skipped). Kept tiny and never replaced by an update: bootsel
# picks the code slot (spending a trial boot or rolling back) and, on a board flashed with
# --romfs, puts that slot's code in its ROMFS partition; then boardlib, which
# checks the safe-mode pin and config.json and starts Wi-Fi. No watchdog here: an armed
# watchdog would reset a board sitting at the REPL; main.py arms it.
import sys

if __name__ == "__main__":
    try:
        import bootsel

        _slot = bootsel.start("")
        del sys.modules["bootsel"], bootsel  # boardlib has its own copy (in the slot)
    except Exception as e:  # whatever the flash holds, boot goes on
        _slot = "a"
        sys.path.insert(0, "slots/a")
        print("roost: slot state unreadable (%s); booting slot a" % e)
    try:
        from roost.firmware import boardlib

        boardlib.boot(_slot)
    except Exception as e:  # (bootsel says it and rolls back an update on trial: the
        try:  # code here is compiled at every boot, in the node's heap)
            import bootsel

            bootsel.cannot_load(_slot, e)
        except Exception:  # (bootsel itself could not be loaded: out of memory, say)
            print("roost: safe mode: slot %s does not load (%s: %s)"
                  % (_slot, type(e).__name__, e))
