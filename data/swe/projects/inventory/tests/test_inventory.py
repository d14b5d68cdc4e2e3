import unittest

from inventory import Inventory


def shop():
    inv = Inventory()
    inv.add("pen", 10, 2)
    inv.add("book", 3, 15)
    inv.add("cup", 5, 4)
    return inv


class TestInventory(unittest.TestCase):
    def test_add_accumulates(self):
        inv = shop()
        inv.add("pen", 5, 2)
        self.assertEqual(inv.items["pen"], (15, 2))

    def test_remove_and_delete(self):
        inv = shop()
        inv.remove("cup", 5)
        self.assertNotIn("cup", inv.items)
        inv.remove("pen", 4)
        self.assertEqual(inv.items["pen"], (6, 2))
        with self.assertRaises(ValueError):
            inv.remove("book", 4)

    def test_total_value(self):
        self.assertEqual(shop().total_value(), 85)

    def test_low_stock(self):
        self.assertEqual(shop().low_stock(5), ["book"])

    def test_most_valuable(self):
        self.assertEqual(shop().most_valuable(), "book")


if __name__ == "__main__":
    unittest.main()
