"""Child process for the SIGKILL torture test: writes keys in a loop, prints each acked value.

Usage: python|micropython tests/runtime/storage_writer.py DIR SYNC(0|1) START
Values are [n, filler, n] with a filler that grows and shrinks, so a torn write cannot
decode as a valid value; after ``commit`` returns it prints ``n``.
"""

import sys

sys.path.insert(0, sys.argv[0].rsplit("tests/", 1)[0] or ".")

from roost.node.logstore import LogStorage  # noqa: E402


def main():
    st = LogStorage(sys.argv[1], sync=sys.argv[2] == "1")
    n = int(sys.argv[3])
    print("ready")
    while n < 10000000:
        n += 1
        filler = "x" * (1 + (n * 7919) % 3000)
        st.stage("k%d" % (n % 3), [n, filler, n])
        st.stage("last", n)
        st.commit()  # both records in one write, as the runtime does for a step
        print(n)


main()
