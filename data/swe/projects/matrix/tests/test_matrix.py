import unittest

from matrix import identity, matmul, power, trace, transpose


class TestMatrix(unittest.TestCase):
    def test_identity(self):
        self.assertEqual(identity(2), [[1, 0], [0, 1]])

    def test_transpose(self):
        self.assertEqual(transpose([[1, 2, 3], [4, 5, 6]]), [[1, 4], [2, 5], [3, 6]])

    def test_matmul(self):
        self.assertEqual(matmul([[1, 2], [3, 4]], [[5], [6]]), [[17], [39]])
        with self.assertRaises(ValueError):
            matmul([[1, 2]], [[1, 2]])

    def test_trace(self):
        self.assertEqual(trace([[2, 9], [9, 3]]), 5)

    def test_power(self):
        self.assertEqual(power([[1, 1], [1, 0]], 10), [[89, 55], [55, 34]])
        self.assertEqual(power([[2, 0], [0, 3]], 0), [[1, 0], [0, 1]])


if __name__ == "__main__":
    unittest.main()
