import unittest

from intervals import contains, gaps, merge, overlaps, total_length


class TestIntervals(unittest.TestCase):
    def test_merge_overlapping_and_adjacent(self):
        self.assertEqual(merge([(5, 8), (1, 3), (4, 4), (10, 12)]), [(1, 8), (10, 12)])

    def test_overlaps(self):
        self.assertTrue(overlaps((1, 5), (5, 9)))
        self.assertFalse(overlaps((1, 4), (5, 9)))

    def test_total_length(self):
        self.assertEqual(total_length([(1, 3), (2, 6), (10, 10)]), 7)

    def test_contains(self):
        self.assertTrue(contains([(1, 3), (7, 9)], 9))
        self.assertFalse(contains([(1, 3), (7, 9)], 5))

    def test_gaps(self):
        self.assertEqual(gaps([(3, 4), (7, 8)], 1, 10), [(1, 2), (5, 6), (9, 10)])


if __name__ == "__main__":
    unittest.main()
