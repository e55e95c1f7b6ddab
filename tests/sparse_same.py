#!/usr/bin/env python3
"""sparse_same.py A B: do two sparse files hold the same bytes? Compares
their sizes, then the data in the union of both files' allocated extents
(SEEK_DATA/SEEK_HOLE); what neither file allocated reads as zeros in both.
Prints the extents of B and exits 0 when equal, 1 with the first
difference otherwise. Reads only what is allocated (a 10 GiB file with
100 MiB written reads 100 MiB)."""
import os
import sys


def extents(fd, size):
    out, pos = [], 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        out.append((data, hole))
        pos = hole
    return out


def main():
    a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
    size = os.fstat(a).st_size
    if os.fstat(b).st_size != size:
        print("sizes differ: %d and %d" % (size, os.fstat(b).st_size))
        return 1
    ea, eb = extents(a, size), extents(b, size)
    for start, end in sorted(ea + eb):
        pos = start
        while pos < end:
            n = min(1 << 20, end - pos)
            if os.pread(a, n, pos) != os.pread(b, n, pos):
                print("the files differ within bytes %d-%d" % (pos, pos + n))
                return 1
            pos += n
    print("same %d bytes; B allocates %d MiB in %d extent(s)" % (size, sum(e - s for s, e in eb) >> 20, len(eb)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
