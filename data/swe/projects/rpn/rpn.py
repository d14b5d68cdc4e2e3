"""A reverse Polish notation calculator over integers."""

OPERATORS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a // b,
}


def tokenize(expression):
    return expression.split()


def evaluate(expression):
    stack = []
    for token in tokenize(expression):
        if token in OPERATORS:
            if len(stack) < 2:
                raise ValueError("not enough operands")
            b = stack.pop()
            a = stack.pop()
            stack.append(OPERATORS[token](a, b))
        else:
            stack.append(int(token))
    if len(stack) != 1:
        raise ValueError("malformed expression")
    return stack[0]


def to_infix(expression):
    stack = []
    for token in tokenize(expression):
        if token in OPERATORS:
            b = stack.pop()
            a = stack.pop()
            stack.append(f"({a} {token} {b})")
        else:
            stack.append(token)
    return stack[0]
