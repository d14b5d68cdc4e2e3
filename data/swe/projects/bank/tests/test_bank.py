import unittest

from bank import Account, InsufficientFunds


class TestAccount(unittest.TestCase):
    def test_deposit(self):
        a = Account("ann")
        a.deposit(50)
        self.assertEqual(a.balance, 50)
        with self.assertRaises(ValueError):
            a.deposit(0)

    def test_withdraw_within_overdraft(self):
        a = Account("ann", balance=10, overdraft=5)
        a.withdraw(15)
        self.assertEqual(a.balance, -5)

    def test_withdraw_beyond_overdraft(self):
        a = Account("ann", balance=10, overdraft=5)
        with self.assertRaises(InsufficientFunds):
            a.withdraw(16)
        self.assertEqual(a.balance, 10)

    def test_transfer(self):
        a, b = Account("ann", balance=30), Account("bob")
        a.transfer(b, 20)
        self.assertEqual((a.balance, b.balance), (10, 20))

    def test_statement(self):
        a = Account("ann", balance=5)
        a.deposit(10)
        a.deposit(3)
        a.withdraw(4)
        self.assertEqual(a.statement(), {"in": 13, "out": 4, "balance": 14})


if __name__ == "__main__":
    unittest.main()
