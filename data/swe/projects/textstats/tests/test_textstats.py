import unittest

from textstats import average_word_length, capitalize_sentences, char_frequency, longest_word, word_count


class TestTextStats(unittest.TestCase):
    def test_word_count(self):
        self.assertEqual(word_count("the quick  brown fox"), 4)
        self.assertEqual(word_count(""), 0)

    def test_char_frequency(self):
        self.assertEqual(char_frequency("Aab, b!"), {"a": 2, "b": 2})

    def test_longest_word_first_of_ties(self):
        self.assertEqual(longest_word("one three seven, eleven."), "eleven")
        self.assertEqual(longest_word("ab cd"), "ab")

    def test_average_word_length(self):
        self.assertAlmostEqual(average_word_length("ab abcd."), 3.0)
        self.assertEqual(average_word_length(""), 0.0)

    def test_capitalize_sentences(self):
        self.assertEqual(capitalize_sentences("hi. how are you? fine!"), "Hi. How are you? Fine!")


if __name__ == "__main__":
    unittest.main()
