"""Stock keeping for a small shop."""


class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, name, quantity, price):
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        count, _ = self.items.get(name, (0, price))
        self.items[name] = (count + quantity, price)

    def remove(self, name, quantity):
        count, price = self.items[name]
        if quantity > count:
            raise ValueError("not enough stock")
        if count - quantity == 0:
            del self.items[name]
        else:
            self.items[name] = (count - quantity, price)

    def total_value(self):
        return sum(count * price for count, price in self.items.values())

    def low_stock(self, threshold):
        return sorted(name for name, (count, _) in self.items.items() if count < threshold)

    def most_valuable(self):
        best, best_value = None, -1
        for name, (count, price) in self.items.items():
            if count * price > best_value:
                best, best_value = name, count * price
        return best
