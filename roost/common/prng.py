"""Seeded PRNG with the same stream on CPython and MicroPython (xoshiro128**).

Cores never touch the global ``random``: they are handed one of these. All arithmetic is
masked to 32 bits so both interpreters agree bit for bit; no floats reach a core.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MASK = const(0xFFFFFFFF)
_HAS_BIT_LENGTH = hasattr(1, "bit_length")  # MicroPython's int has none


def _splitmix32(x):
    """One step of a 32-bit splitmix: returns (new_state, output)."""
    x = (x + 0x9E3779B9) & _MASK
    z = x
    z = ((z ^ (z >> 16)) * 0x85EBCA6B) & _MASK
    z = ((z ^ (z >> 13)) * 0xC2B2AE35) & _MASK
    return x, z ^ (z >> 16)


SEED_MAX = 0xFFFFFFFF  # int seeds are folded to 32 bits: larger or negative ones alias others


def seed_problem(seed, flag="--seed"):
    """None for a seed of 0..SEED_MAX, else one sentence naming flag (a command line's check:
    seed 4294967297 or -1 would replay seed 0's run)."""
    if isinstance(seed, int) and 0 <= seed <= SEED_MAX:
        return None
    return "%s must be a whole number from 0 to %d (seeds are 32-bit)" % (flag, SEED_MAX)


def seed_to_int(seed):
    """An int or str seed -> 32-bit int (strings through FNV-1a, never hash())."""
    if isinstance(seed, int):
        return seed & _MASK ^ ((seed >> 32) & _MASK)
    if isinstance(seed, str):
        seed = seed.encode()
    h = 0x811C9DC5
    for b in seed:
        h = ((h ^ b) * 0x01000193) & _MASK
    return h


class Prng:
    """xoshiro128** seeded through splitmix32. ``getrandbits(n)`` for n <= 32."""

    __slots__ = ("_s0", "_s1", "_s2", "_s3")

    def __init__(self, seed=0):
        x = seed_to_int(seed)
        x, self._s0 = _splitmix32(x)
        x, self._s1 = _splitmix32(x)
        x, self._s2 = _splitmix32(x)
        x, self._s3 = _splitmix32(x)
        if not (self._s0 | self._s1 | self._s2 | self._s3):
            self._s0 = 1

    def next32(self):
        """Next 32-bit output."""
        s0, s1, s2, s3 = self._s0, self._s1, self._s2, self._s3
        r = (s1 * 5) & _MASK
        r = (((r << 7) | (r >> 25)) & _MASK) * 9 & _MASK
        t = (s1 << 9) & _MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 11) | (s3 >> 21)) & _MASK
        self._s0, self._s1, self._s2, self._s3 = s0, s1, s2, s3
        return r

    def getrandbits(self, n):
        """An int of n random bits, 0 <= n <= 32 (the MicroPython limit too)."""
        if not 0 <= n <= 32:
            raise ValueError("getrandbits takes 0..32 bits")
        if n == 0:
            return 0
        return self.next32() >> (32 - n)

    def randbelow(self, n):
        """Uniform int in [0, n) for 1 <= n <= 2**32, without modulo bias."""
        if n <= 0:
            raise ValueError("randbelow needs n >= 1")
        if n == 1:
            return 0
        bits = (n - 1).bit_length() if _HAS_BIT_LENGTH else _bitlen(n - 1)
        if bits > 32:
            raise ValueError("randbelow supports n <= 2**32")
        shift = 32 - bits  # getrandbits(bits), without its checks on every draw
        while True:
            r = self.next32() >> shift
            if r < n:
                return r

    def randrange(self, start, stop=None):
        """Uniform int in [start, stop) (or [0, start))."""
        if stop is None:
            start, stop = 0, start
        return start + self.randbelow(stop - start)

    def randint(self, a, b):
        """Uniform int in [a, b]."""
        return a + self.randbelow(b - a + 1)

    def chance(self, num, den=1000000):
        """True with probability num/den (integers: same answer on every interpreter)."""
        return self.randbelow(den) < num

    def random(self):
        """Float in [0, 1) from 24 bits, exact in single and double precision."""
        return self.getrandbits(24) / 16777216.0

    def choice(self, seq):
        """One element of a non-empty sequence."""
        if not seq:
            raise ValueError("choice from an empty sequence")
        return seq[self.randbelow(len(seq))]

    def shuffle(self, items):
        """Fisher-Yates in place."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]

    def sample(self, seq, k):
        """k distinct elements of seq, in random order: the first k steps of a Fisher-Yates
        shuffle, with the swapped positions in a dict instead of a copy of seq (a gossip
        round picks 3 of a thousand members)."""
        if not isinstance(seq, (list, tuple)):
            seq = list(seq)
        n = len(seq)
        if k > n:
            k = n
        moved = {}  # position -> index into seq of the element now there
        out = []
        for i in range(k):
            j = i + self.randbelow(n - i)
            out.append(seq[moved.get(j, j)])
            moved[j] = moved.get(i, i)
        return out

    def fork(self, label):
        """An independent stream derived from this one and a label (for sub-components)."""
        return Prng((self.next32() ^ seed_to_int(label)) & _MASK)


def _bitlen(n):
    b = 0
    while n:
        n >>= 1
        b += 1
    return b
