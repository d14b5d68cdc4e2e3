import unittest

from rpn import evaluate, to_infix


class TestRPN(unittest.TestCase):
    def test_evaluate(self):
        self.assertEqual(evaluate("3 4 + 2 *"), 14)
        self.assertEqual(evaluate("10 3 -"), 7)
        self.assertEqual(evaluate("17 5 /"), 3)

    def test_errors(self):
        with self.assertRaises(ValueError):
            evaluate("1 +")
        with self.assertRaises(ValueError):
            evaluate("1 2")

    def test_to_infix(self):
        self.assertEqual(to_infix("3 4 + 2 *"), "((3 + 4) * 2)")


if __name__ == "__main__":
    unittest.main()
