# roost main.py: start the node (skipped in safe mode: a held safe-mode pin or a bad
# config.json leaves the board at the REPL instead of a crash loop).
if __name__ == "__main__":
    try:
        from roost.firmware import boardlib
    except Exception:
        boardlib = None  # boot.py already said why, in one sentence
    if boardlib is not None and boardlib.STATE["safe"] is None and boardlib.STATE["cfg"]:
        try:
            boardlib.main()
        except KeyboardInterrupt:
            print("roost: stopped (Ctrl-C)")
        except Exception as e:
            print("roost: node stopped by %s: %s; resetting in 10 s" % (type(e).__name__, e))
            boardlib.print_exception(e)
            import time

            time.sleep(10)
            import machine

            machine.reset()
