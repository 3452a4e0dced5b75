"""Simulated board parts for the virtual board (``roost board serve``), MicroPython side.

Placed on the virtual board's module path OUTSIDE its flash directory: ``machine`` and
``network`` stand-ins for the unix port, and ``agent``, the loop that runs REPL code in one
persistent interpreter. Never copied to a real board.
"""
