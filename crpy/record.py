"""Plain records for crpy's value classes: the part of the standard `dataclasses` that crpy uses,
made for start-up time.

    from crpy.record import dataclass, field

    @dataclass                    # or @dataclass(frozen=True)
    class Vma:
        start: int
        flags: frozenset = field(default_factory=frozenset)
        name: str = ""

Fields come from the class's own annotations, in order; a field may have a default or
field(default_factory=...).  The class gets __init__ (calling __post_init__ if there is one),
__repr__ and __eq__ as dataclasses writes them; frozen=True makes instances read-only and
hashable.  No inheritance of fields, no ClassVar/InitVar, no slots, no ordering: crpy needs none.

Why not dataclasses itself: importing it costs about 5 ms (it imports inspect, ast, dis) and
each class about 0.6 ms more (several exec() of generated source, inspect.signature for a
docstring); a `crpy dump` or `crpy restore` of a small process builds 14-18 classes, so 15-20 ms
of a 100 ms budget.  Here each class costs one small exec() for a fast __init__.
"""

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record."""


class _Field:
    __slots__ = ("default", "default_factory")

    def __init__(self, default, default_factory):
        self.default, self.default_factory = default, default_factory


def field(*, default=_MISSING, default_factory=_MISSING):
    """A field's default (default=...) or a callable that makes a fresh one per instance."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("field() takes a default or a default_factory, not both")
    return _Field(default, default_factory)


def dataclass(cls=None, *, frozen=False):
    """Make cls a record (usable as @dataclass and @dataclass(frozen=True))."""
    def wrap(c):
        return _make(c, frozen)

    return wrap if cls is None else wrap(cls)


def _make(cls, frozen):
    names, scope, params, body, defaulted = [], {"_MISSING": _MISSING}, [], [], False
    setter = "object.__setattr__(self, {name!r}, {value})" if frozen else "self.{name} = {value}"
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name, _MISSING)
        factory = _MISSING
        if isinstance(value, _Field):
            value, factory = value.default, value.default_factory
            if value is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value)
        if factory is not _MISSING:
            defaulted = True
            scope[f"_factory_{name}"] = factory
            params.append(f"{name}=_MISSING")
            body.append(setter.format(name=name, value=f"_factory_{name}() if {name} is _MISSING else {name}"))
        else:
            if value is not _MISSING:
                defaulted = True
                scope[f"_default_{name}"] = value
                params.append(f"{name}=_default_{name}")
            elif defaulted:
                raise TypeError(f"{cls.__name__}: field {name} without a default follows one with a default")
            else:
                params.append(name)
            body.append(setter.format(name=name, value=name))
        names.append(name)
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body or ["pass"]) + "\n"
    exec(source, scope)                       # noqa: S102 - our own text, built from field names
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    fields = tuple(names)
    own = cls.__dict__
    explicit_hash = own.get("__hash__") is not None
    for attr, method in (("__init__", init), ("__repr__", _repr(fields)), ("__eq__", _eq(fields))):
        if attr not in own:                   # a method the class writes itself stays, as with dataclasses
            setattr(cls, attr, method)
    cls._record_fields = fields
    if frozen:
        cls.__setattr__ = _refuse_set
        cls.__delattr__ = _refuse_del
    if not explicit_hash:                     # frozen: hashed by value; mutable: unhashable, as dataclasses does
        cls.__hash__ = (lambda self: hash(tuple(getattr(self, n) for n in fields))) if frozen else None
    return cls


def _repr(fields):
    def __repr__(self):
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in fields)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _eq(fields):
    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in fields)

    return __eq__


def _refuse_set(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_del(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r}")
