import unittest

from roman import from_roman, is_valid, to_roman


class TestRoman(unittest.TestCase):
    def test_to_roman(self):
        self.assertEqual(to_roman(1994), "MCMXCIV")
        self.assertEqual(to_roman(3999), "MMMCMXCIX")
        self.assertEqual(to_roman(4), "IV")

    def test_to_roman_range(self):
        with self.assertRaises(ValueError):
            to_roman(0)
        with self.assertRaises(ValueError):
            to_roman(4000)

    def test_from_roman(self):
        self.assertEqual(from_roman("MCMXCIV"), 1994)
        self.assertEqual(from_roman("XLII"), 42)

    def test_is_valid(self):
        self.assertTrue(is_valid("XIV"))
        self.assertFalse(is_valid("IIII"))
        self.assertFalse(is_valid("ABC"))


if __name__ == "__main__":
    unittest.main()
