"""crpy.record: the dataclass subset crpy's value classes use behaves as dataclasses does."""

import pytest

from crpy.record import FrozenInstanceError, dataclass, field


@dataclass
class Plain:
    a: int
    b: int = 2
    c: list = field(default_factory=list)


@dataclass(frozen=True)
class Frozen:
    x: int = 1
    y: str = ""


@dataclass
class WithPost:
    n: int

    def __post_init__(self):
        self.double = 2 * self.n


def test_init_defaults_and_factories():
    p = Plain(1)
    assert (p.a, p.b, p.c) == (1, 2, [])
    assert Plain(1).c is not Plain(1).c                 # a fresh list per instance
    assert Plain(1, c=[3]).c == [3] and Plain(a=5, b=6).b == 6
    with pytest.raises(TypeError):
        Plain()                                         # a field without a default is required
    assert Plain.b == 2 and not hasattr(Plain, "c")    # as dataclasses leaves the class


def test_repr_eq_hash():
    assert repr(Plain(1)) == "Plain(a=1, b=2, c=[])"
    assert Plain(1) == Plain(1, 2, []) and Plain(1) != Plain(2)
    assert Plain(1) != (1, 2, [])
    with pytest.raises(TypeError):
        hash(Plain(1))                                  # mutable: unhashable
    assert hash(Frozen()) == hash(Frozen(1, "")) and len({Frozen(), Frozen(), Frozen(2)}) == 2


def test_frozen_and_post_init():
    f = Frozen()
    with pytest.raises(FrozenInstanceError):
        f.x = 3
    with pytest.raises(FrozenInstanceError):
        del f.y
    assert WithPost(4).double == 8


def test_a_required_field_after_a_default_is_refused():
    with pytest.raises(TypeError):
        @dataclass
        class Bad:
            a: int = 1
            b: int
