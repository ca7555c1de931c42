"""A Python compute loop: exact integer sums, a float sum, a suspended generator, a closure, a
big dict and a big int, all advanced or kept across the dump; checked against closed forms."""

import itertools

from common import Target

t = Target()
table = {k: str(k * k) for k in range(200000)}
big = 3 ** 20000
squares = (x * x for x in itertools.count())       # a generator suspended mid-iteration


def make_counter():
    n = 0

    def bump():
        nonlocal n
        n += 1
        return n
    return bump


bump = make_counter()
i = s1 = s2 = 0
half = 0.0
t.ready()
while not t.term:
    for _ in range(2000):
        s1 += i
        s2 += i * i
        half += 0.5
        if next(squares) != i * i:
            raise SystemExit("generator out of step")
        bump()
        i += 1
    t.progress(i)


def check():
    global s2
    if t.breaking:
        s2 += 1
    problems = []
    if s1 != i * (i - 1) // 2:
        problems.append(f"sum of 0..{i - 1} is {s1}")
    if s2 != (i - 1) * i * (2 * i - 1) // 6:
        problems.append(f"sum of squares of 0..{i - 1} is {s2}")
    if half != i * 0.5:
        problems.append(f"float sum {half} after {i} steps")
    if next(squares) != i * i:
        problems.append("the generator lost its place")
    if bump() != i + 1:
        problems.append("the closure's counter lost its value")
    if len(table) != 200000 or any(table[k] != str(k * k) for k in range(0, 200000, 997)):
        problems.append("the dict changed")
    if big != 3 ** 20000:
        problems.append("the big int changed")
    return problems


t.finish(check)
