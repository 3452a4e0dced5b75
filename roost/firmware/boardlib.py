"""What boot.py and main.py do on a board, kept here so it is compiled, tested and small.

MicroPython-safe. ``machine`` and ``network`` are imported inside the functions that need
them (or passed in by tests), so this module also imports on the unix port and CPython.

Console lines a person (or ``roost flash``) watches for, one per event:

    roost: safe mode: <reason>; fix it and reset the board.
    roost: started <node id>
    roost: joined fleet <fleet> as <node id>

Secrets from secrets.json are handed to Wi-Fi and the runtime and never printed.
"""

import sys
import time

from roost.firmware import bootsel, nodeconfig

STATE = {"safe": None, "slot": "a", "cfg": None, "secrets": None, "wlan": None}


def log(line):
    print(line)


def _sleep_ms(ms):
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


def _ticks():
    if hasattr(time, "ticks_ms"):
        return time.ticks_ms()
    return int(time.monotonic() * 1000)


def _elapsed(t0):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(time.ticks_ms(), t0)
    return _ticks() - t0


def _mem_free():
    try:
        import gc

        gc.collect()
        return gc.mem_free()
    except (ImportError, AttributeError):
        return "?"


def backoff_delays(first_ms, max_ms, attempts):
    """Waits between attempts: first_ms doubling up to max_ms (attempts - 1 of them)."""
    out = []
    d = first_ms
    for _ in range(attempts - 1):
        out.append(d)
        d = min(d * 2, max_ms)
    return out


def safe_pin_held(pin_no, machine=None):
    """True when the safe-mode pin reads low (held to ground, e.g. the BOOT button)."""
    if machine is None:
        try:
            import machine
        except ImportError:
            return False
    pin_cls = getattr(machine, "Pin", None)
    if pin_cls is None:  # the unix port's machine module has no pins
        return False
    try:
        return pin_cls(pin_no, pin_cls.IN, pin_cls.PULL_UP).value() == 0
    except (ValueError, OSError):
        return False


class Watchdog:
    """The hardware watchdog, armed once the node starts (never in safe mode or boot.py:
    an armed watchdog would reset a board sitting at the REPL)."""

    def __init__(self, timeout_ms, machine=None):
        self.feeds = 0
        self._wdt = None
        if machine is None:
            try:
                import machine
            except ImportError:
                machine = None
        if machine is not None and hasattr(machine, "WDT"):
            self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        self.feeds += 1
        if self._wdt is not None:
            self._wdt.feed()


def wifi_start(ssid, password, network=None):
    """Activate station mode and start connecting; returns the WLAN (or None without one)."""
    if not ssid:
        return None
    if network is None:
        try:
            import network
        except ImportError:
            return None
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, password)
    return wlan


def wifi_wait(wlan, wait_ms, sleep_ms=_sleep_ms, feed=None):
    """Poll until connected or about wait_ms passed (counted in sleeps, so a test's fake
    sleep is enough). True when connected."""
    step = 100
    waited = 0
    while True:
        if wlan.isconnected():
            return True
        if waited >= wait_ms:
            return False
        if feed is not None:
            feed()
        sleep_ms(step)
        waited += step


def wifi_connect(wlan, ssid, password, cfg, sleep_ms=_sleep_ms, feed=None, say=None):
    """Retry with doubling back-off (cfg.wifi_attempts tries). True when connected."""
    if say is None:
        say = log
    if wlan is None:
        return True  # no Wi-Fi configured: a wired or virtual board
    delays = backoff_delays(cfg.wifi_retry_ms, cfg.wifi_retry_max_ms, cfg.wifi_attempts)
    for attempt in range(cfg.wifi_attempts):
        if wifi_wait(wlan, 5000, sleep_ms, feed):
            return True
        if attempt == len(delays):
            break
        say("roost: wifi %r not reached (attempt %d of %d); retrying in %d ms"
            % (ssid, attempt + 1, cfg.wifi_attempts, delays[attempt]))
        try:
            wlan.disconnect()
            wlan.connect(ssid, password)
        except OSError:
            pass
        waited = 0
        while waited < delays[attempt]:
            if feed is not None:
                feed()
            sleep_ms(min(500, delays[attempt] - waited))
            waited += 500
    say("roost: wifi %r not reached; starting offline" % ssid)
    return False


def enter_safe_mode(why):
    STATE["safe"] = why
    log(nodeconfig.safe_mode_sentence(why))


def boot(slot, root="", machine=None, network=None):
    """boot.py's work after the slot was chosen: safe-mode pin, config, start Wi-Fi."""
    STATE["slot"] = slot
    cfg, secrets, why = nodeconfig.load(root)
    pin = cfg.safe_pin if cfg is not None else nodeconfig.FirmwareConfig.safe_pin
    if safe_pin_held(pin, machine):
        enter_safe_mode("pin %d was held at reset, main.py skipped" % pin)
        return STATE
    if why:
        note = bootsel.give_up(root)  # an update on trial that refuses this config
        if note:
            log("%s (%s)" % (note, why))
            if machine is None:
                import machine
            machine.reset()
            return STATE  # (a fake machine in tests returns)
        enter_safe_mode(why)
        return STATE
    STATE["cfg"] = cfg
    STATE["secrets"] = secrets
    try:
        wlan = wifi_start(cfg.wifi_ssid, secrets.get("wifi_password", ""), network)
        STATE["wlan"] = wlan
        if wlan is not None:
            wifi_wait(wlan, cfg.wifi_boot_wait_ms)
    except OSError as e:
        log("roost: wifi could not start (%s); main.py retries" % e)
    return STATE


def joined(fleet, node_id, root=""):
    """The runtime calls this once the node is a member: print it and keep an update.
    -> True when it confirmed an update."""
    from roost.firmware import ota

    done = ota.confirm(root)
    if done:
        log("roost: update confirmed in slot %s" % STATE["slot"])
    log("roost: joined fleet %s as %s" % (fleet, node_id))
    return done


def main(root="", machine=None, network=None, runtime=None, idle_rounds=-1):
    """main.py's work: Wi-Fi with back-off, watchdog, start the node runtime.

    ``idle_rounds`` bounds the idle loop for tests (-1: forever, as on a board).
    Returns a short word saying how it ended (tests).
    """
    if STATE["safe"] is not None:
        return "safe"
    cfg, secrets = STATE["cfg"], STATE["secrets"]
    if cfg is None:
        return "safe"
    from roost.firmware import ota

    wdt = Watchdog(cfg.watchdog_ms, machine)
    wifi_connect(STATE["wlan"], cfg.wifi_ssid, secrets.get("wifi_password", ""), cfg,
                 feed=wdt.feed)
    watch = ota.JoinWatch(_ticks(), cfg.ota_join_timeout_ms, ota.in_trial(root))
    st = bootsel.read_state(root)
    import roost

    log("roost: code slot %s%s%s%s" % (st[0], " version " + st[4] if st[4] else "",
                                       " (on trial)" if st[2] != bootsel.CONFIRMED else "",
                                       ", in place from ROMFS"
                                       if getattr(roost, "__file__", "").startswith("/rom/")
                                       else ""))
    log("roost: started %s" % cfg.node_id)
    try:
        if _start_node(cfg, secrets, BoardHooks(cfg, wdt, watch, root,
                                                secrets.get("fleet_key", "")), runtime):
            return "stopped"
    except MemoryError:
        if watch.joined:
            raise  # it ran: main.py resets the board
        # it never started, and a reset would fail the same way: say so once and idle
        # (an update on trial still rolls back when its join deadline passes)
        log("roost: the node does not fit in this board's memory (%s bytes free); it "
            "idles: use a board with PSRAM, or keep the code in flash (a ROMFS firmware and "
            "roost flash --romfs)" % _mem_free())
    rounds = 0
    while idle_rounds < 0 or rounds < idle_rounds:
        wdt.feed()
        if watch.expired(_ticks()):
            rollback_and_reset(root, machine)
            return "rollback"
        _sleep_ms(1000)
        rounds += 1
    return "idle"


def _start_node(cfg, secrets, hooks, runtime=None):
    """Run the node runtime's run_board until it stops (True), or say why not (False)."""
    if runtime is None:
        try:
            from roost.node import runtime
        except ImportError as e:
            log("roost: node runtime not available (%s); idling" % e)
            return False
    start = getattr(runtime, "run_board", None)
    if start is None:
        log("roost: node runtime has no run_board(); idling")
        return False
    try:
        start(cfg, secrets, hooks)
    except getattr(runtime, "ConfigError", ()) as e:  # its options, or a board name, wrong
        log("roost: safe mode: config.json: %s; fix it and reset the board." % e)
        return False
    return True


def rollback_and_reset(root="", machine=None):
    from roost.firmware import ota

    if ota.rollback(root):
        log("roost: update did not join in time; rolling back and resetting")
    if machine is None:
        import machine
    machine.reset()


class BoardHooks:
    """What a runtime on a board calls back: feed the watchdog, report joined, OTA checks."""

    def __init__(self, cfg, wdt, watch, root, key=""):
        self.cfg = cfg
        self.wdt = wdt
        self.watch = watch
        self.root = root
        self.key = key
        self.ota = None

    def feed(self):
        self.wdt.feed()

    def joined(self, now_ms=0):
        self.watch.joined_at(now_ms)
        if joined(self.cfg.fleet, self.cfg.node_id, self.root) and self.ota is not None:
            self.ota.report_state("confirmed")  # on the result topic, beside the console

    def check(self):
        """Call about once a second: rolls back and resets when an update missed its join,
        resets into an update that OTA over MQTT has just switched to."""
        if self.watch.expired(_ticks()):
            rollback_and_reset(self.root)
        if self.ota is not None and self.ota.reset_pending:
            import machine

            machine.reset()

    def attach(self, node):
        """The node runtime is built: listen for updates on its MQTT client."""
        if getattr(node, "mqtt", None) is None:
            return
        from roost.node.ota_mqtt import OtaMqtt

        self.ota = OtaMqtt(node.mqtt, self.cfg.fleet, self.cfg.node_id, self.cfg.board,
                           self.key, self.root, log)
        if bootsel.read_state(self.root)[4] == "rollback":  # the last update's end, said
            self.ota.report_state("rolled_back")  # where its switch was

    def status(self):
        st = bootsel.read_state(self.root)
        out = {"slot": st[0], "trial": st[2], "serial": st[3], "version": st[4]}
        if self.ota is not None:
            out["ota"] = dict(self.ota.stats)
        return out


def print_exception(e):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback

        traceback.print_exception(e)
