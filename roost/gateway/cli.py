"""The ``roost`` command line.

Each command lives in the module that owns its subject; this file only builds the parser
tree and turns a user's mistake into one sentence (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from roost import __version__


class UsageError(Exception):
    """A mistake on the command line: printed as one sentence, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError("%s: %s (see '%s --help')" % (self.prog, message, self.prog))


def _sim_parsers(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser(
        "sim",
        help="run the deterministic simulator (virtual time, seeded faults, replayable)",
        description="Run a protocol in the deterministic simulator. Same seed, same run: a "
        "failure prints the command that replays it.",
    )
    simsub = sim.add_subparsers(dest="sim_command", metavar="PROTOCOL", parser_class=_Parser)
    simsub.required = True
    from roost.emulator import gossip_scenario

    gossip_scenario.add_gossip_parser(simsub)
    try:
        from roost.emulator import kv_scenario
    except ImportError:  # the key-value scenario lands with the replicated store
        kv_scenario = None
    if kv_scenario is not None:
        kv_scenario.add_kv_parser(simsub)


def _check_parser(sub: argparse._SubParsersAction) -> None:
    try:
        from roost.emulator import linearize
    except ImportError:
        return
    linearize.add_check_parser(sub)


def _board_parsers(sub: argparse._SubParsersAction) -> None:
    """Boards: build an image, list ports, flash, serve a virtual board; and the broker."""
    from roost.firmware import build, flash, ota_publish, ports, vboard
    from roost.gateway import broker, discovery

    build.add_build_parser(sub)
    ports.add_ports_parser(sub)
    flash.add_flash_parser(sub)
    ota_publish.add_ota_parser(sub)
    vboard.add_board_parser(sub)
    broker.add_broker_parser(sub)
    discovery.add_discover_parser(sub)


def _fleet_parsers(sub: argparse._SubParsersAction) -> None:
    """A fleet of real processes: run a node, emulate a fleet, pull plugs, use the store."""
    from roost.emulator import chaos, fleet
    from roost.gateway import client, gateway, node_cmd, plan

    node_cmd.add_node_parser(sub)
    plan.add_plan_parser(sub)
    gateway.add_gateway_parser(sub)
    fleet.add_emulate_parser(sub)
    chaos.add_chaos_parser(sub)
    client.add_kv_parser(sub)
    client.add_status_parser(sub)
    client.add_load_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="roost",
        description="roost: a fault-tolerant sensor network you can hold in your hand. "
        "Start with 'roost demo'.",
    )
    parser.add_argument("--version", action="version", version="roost " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    from roost.gateway import demo

    demo.add_demo_parser(sub)
    _sim_parsers(sub)
    _check_parser(sub)
    _fleet_parsers(sub)
    _board_parsers(sub)
    return parser


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    fn = getattr(args, "handler", None) or getattr(args, "func", None)
    if fn is None:
        raise UsageError("roost: no command given (see 'roost --help')")
    return fn


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    first = (sys.argv[1:] if argv is None else argv)[:1]
    try:
        if first and first[0].startswith("-") and first[0] not in ("-h", "--help",
                                                                    "--version"):
            # argparse would only say that a command is missing
            raise UsageError("roost: unknown option %s: the command comes first, like 'roost "
                             "demo' (see 'roost --help')" % first[0])
        args = parser.parse_args(argv)
        code = int(_handler(args)(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the exit
        return code
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, OverflowError) as e:  # option values the commands reject (or that
        # overflow what they feed: a port of 99999, a timeout of 1e308)
        print("roost: %s" % e, file=sys.stderr)
        return 2
    except BrokenPipeError:  # `roost status | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except OSError as e:  # after BrokenPipeError, which is one
        if e.filename is None:
            raise
        # a path given on the command line (or in a config) that cannot be used: a file
        # where a directory belongs, a directory that cannot be made, no permission
        print("roost: cannot use %s: %s" % (e.filename, e.strerror), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("roost: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
