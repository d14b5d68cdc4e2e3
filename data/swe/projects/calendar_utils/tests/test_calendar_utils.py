import unittest

from calendar_utils import day_of_year, days_between, days_in_month, is_leap, weekday


class TestCalendar(unittest.TestCase):
    def test_is_leap(self):
        self.assertEqual([is_leap(y) for y in (1900, 2000, 2023, 2024)], [False, True, False, True])

    def test_days_in_month(self):
        self.assertEqual(days_in_month(2024, 2), 29)
        self.assertEqual(days_in_month(2023, 2), 28)
        self.assertEqual(days_in_month(2023, 12), 31)

    def test_day_of_year(self):
        self.assertEqual(day_of_year(2024, 3, 1), 61)
        self.assertEqual(day_of_year(2023, 1, 1), 1)

    def test_days_between(self):
        self.assertEqual(days_between((2023, 12, 31), (2024, 3, 1)), 61)

    def test_weekday(self):
        self.assertEqual(weekday(2024, 7, 4), 3)
        self.assertEqual(weekday(2000, 1, 1), 5)


if __name__ == "__main__":
    unittest.main()
