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
    except Exception as e:
        _note = ""
        try:  # an update on trial whose code does not load: back to the slot before it
            import bootsel

            _note = bootsel.give_up("")
        except Exception:
            pass
        if _note:
            print("%s (%s: %s)" % (_note, type(e).__name__, e))
            import machine

            machine.reset()
        print("roost: safe mode: the node image in slot %s does not load (%s: %s); "
              "flash it again and reset the board." % (_slot, type(e).__name__, e))
