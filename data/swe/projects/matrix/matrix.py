"""Matrices as lists of rows."""


def identity(n):
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def transpose(m):
    return [[m[i][j] for i in range(len(m))] for j in range(len(m[0]))]


def matmul(a, b):
    if len(a[0]) != len(b):
        raise ValueError("shape mismatch")
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def trace(m):
    return sum(m[i][i] for i in range(len(m)))


def power(m, k):
    result = identity(len(m))
    while k > 0:
        if k % 2 == 1:
            result = matmul(result, m)
        m = matmul(m, m)
        k //= 2
    return result
