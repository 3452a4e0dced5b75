"""Hard limits shared by every transport, with the reason for each."""

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


MAX_DATAGRAM = const(1400)  # one UDP datagram below a 1500-byte Ethernet MTU, no fragments
MIN_DATAGRAM = const(40)  # 32-byte tag plus the shortest JSON envelope
MAX_ID_LEN = const(32)  # node and fleet ids: short strings, cheap to carry in every message
WIRE_VERSION = const(1)  # envelope version; a peer with another version is dropped and counted
