"""Closed integer intervals [start, end]."""


def merge(intervals):
    result = []
    for start, end in sorted(intervals):
        if result and start <= result[-1][1] + 1:
            result[-1][1] = max(result[-1][1], end)
        else:
            result.append([start, end])
    return [tuple(iv) for iv in result]


def overlaps(a, b):
    return a[0] <= b[1] and b[0] <= a[1]


def total_length(intervals):
    return sum(end - start + 1 for start, end in merge(intervals))


def contains(intervals, point):
    for start, end in intervals:
        if start <= point <= end:
            return True
    return False


def gaps(intervals, lo, hi):
    out = []
    cursor = lo
    for start, end in merge(intervals):
        if start > cursor:
            out.append((cursor, min(start - 1, hi)))
        cursor = max(cursor, end + 1)
    if cursor <= hi:
        out.append((cursor, hi))
    return out
