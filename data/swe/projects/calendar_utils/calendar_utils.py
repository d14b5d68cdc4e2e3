"""Gregorian calendar arithmetic."""

DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year, month):
    if month == 2 and is_leap(year):
        return 29
    return DAYS[month - 1]


def day_of_year(year, month, day):
    return sum(days_in_month(year, m) for m in range(1, month)) + day


def days_between(a, b):
    def ordinal(date):
        year, month, day = date
        y = year - 1
        return y * 365 + y // 4 - y // 100 + y // 400 + day_of_year(year, month, day)

    return ordinal(b) - ordinal(a)


def weekday(year, month, day):
    # 2000-01-01 was a Saturday (index 5 with Monday = 0)
    return (days_between((2000, 1, 1), (year, month, day)) + 5) % 7
