"""How big the result of a template operation will be, estimated from its operands *before* it is built.

The sandbox (:mod:`notifiers.sandbox`) asks these functions first and refuses an operation whose
estimate is over the limit, so ``range(99999)|join('x' * 100000)`` is refused without building
anything. Estimates count what grows without bound (widths, repetitions, separators times items,
replacements times occurrences, indentation times lines); per-character expansions that are at
most a small constant factor (HTML escaping, case mapping, ``repr`` quoting, JSON ``\\u`` escapes,
URL quoting) are not counted here: the actual result is measured right after it is built, and a
constant factor of a bounded operand is bounded. Every walker stops as soon as it passes
``limit``, so measuring a huge structure costs at most ``limit`` steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import date, time
from itertools import chain, islice
from typing import Any

from jinja2.utils import Namespace

#: Size charged for an object whose text is short and fixed (a function, an iterator, a range).
_OPAQUE = 64
_CONTAINERS: tuple[type, ...] = (
    list,
    tuple,
    Set,
    Mapping,
    type({}.keys()),
    type({}.values()),
    type({}.items()),
)


@dataclass(frozen=True)
class Measure:
    """``size``: characters of ``str(value)`` (structure only); ``nodes``: values in it; ``depth``."""

    size: int
    nodes: int
    depth: int


def _scalar_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bytes | bytearray):
        return len(value) + 3
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, float):
        return 24
    if isinstance(value, date | time):
        return 32
    try:  # a short object of the context (a date, a LoopContext, a Macro, a generator ...)
        return (
            len(object.__repr__(value)) if callable(value) or hasattr(value, "__next__") else len(str(value))
        )
    except Exception:
        return 0


def _children(value: Any) -> Iterable[Any] | None:
    if isinstance(value, str | bytes | bytearray):
        return None
    if isinstance(value, Namespace):
        return chain.from_iterable(object.__getattribute__(value, "_Namespace__attrs").items())
    if isinstance(value, Mapping):
        return chain.from_iterable(value.items())
    if isinstance(value, _CONTAINERS):
        return iter(value)  # type: ignore[no-any-return, call-overload]
    return None


def measure(value: Any, limit: int) -> Measure:
    """Size of ``str(value)``; containers are walked (their items are ``repr``-ed), stopping past ``limit``."""
    if isinstance(value, str):
        return Measure(len(value), 1, 0)
    size = nodes = depth = 0
    stack: list[Iterable[Any]] = [iter((value,))]
    while stack:
        try:
            item = next(iter(stack[-1]))
        except StopIteration:
            stack.pop()
            continue
        nodes += 1
        children = _children(item)
        if children is None:
            size += _scalar_size(item) + 4  # quotes and ", "
        else:
            size += 16  # brackets, a type name
            stack.append(iter(children))
            depth = max(depth, len(stack) - 1)
        if size > limit:
            break
    return Measure(size, nodes, depth)


def text_size(value: Any, limit: int) -> int:
    if isinstance(value, str):
        return len(value)
    if value is None or isinstance(value, int | float):
        return _scalar_size(value) + 4  # what measure() says of a scalar, without its walk
    return measure(value, limit).size


def total_text_size(values: Iterable[Any], limit: int, separator: int = 0) -> int:
    """Size of ``sep.join(str(v) for v in values)``, stopping past ``limit``."""
    total = -separator
    for value in values:
        total += text_size(value, limit) + separator
        if total > limit:
            break
    return max(total, 0)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _digits(text: str | None) -> int:
    if not text:
        return 0
    return int(text) if len(text) <= 9 else 10**9  # never parse a 5,000-digit width


# -- printf style: ``'%5s' % x``, ``|format`` ----------------------------------------------------
_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?(?P<conv>.?)", re.S
)


def printf_size(template: str | bytes, values: Any, limit: int) -> int:
    """Size of ``template % values``: literal text plus, per conversion, max(width, value + precision)."""
    fmt = template.decode("latin-1") if isinstance(template, bytes | bytearray) else template
    mapping = values if isinstance(values, Mapping) else None
    positional = list(values) if isinstance(values, tuple) else [values]
    index = 0

    def take() -> Any:
        nonlocal index
        value = positional[index] if index < len(positional) else None
        index += 1
        return value

    total = len(fmt)
    for match in _PRINTF.finditer(fmt):
        if match["conv"] in ("%", ""):
            continue
        width = abs(_int(take())) if match["width"] == "*" else _digits(match["width"])
        precision = abs(_int(take())) if match["precision"] == "*" else _digits(match["precision"])
        key = match["key"]
        value = mapping.get(key) if key is not None and mapping is not None else take()
        value_size = 330 if isinstance(value, float) else text_size(value, limit)
        total += max(width, value_size + precision)
        if total > limit:
            break
    return total


# -- str.format: ``'{0:>10}'.format(x)`` ---------------------------------------------------------
_FORMAT_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d*))?[a-zA-Z%]?", re.S
)


def format_field_size(value: Any, spec: str, limit: int) -> int:
    """Size of ``format(value, spec)``: max(width, value + precision); dates expand their strftime spec."""
    if isinstance(value, date | time):
        return 12 * len(spec) + 32  # the longest strftime directive is ~12 times its code
    match = _FORMAT_SPEC.fullmatch(spec)
    if match is None:
        return len(spec) + text_size(value, limit)
    width, precision = _digits(match["width"]), _digits(match["precision"])
    if isinstance(value, float):
        value_size = 330
    elif isinstance(value, int):
        value_size = value.bit_length() + 8  # binary is the longest form
    else:
        value_size = text_size(value, limit)
    return max(width, value_size + precision)


# -- filters: name -> estimate from the bound arguments -------------------------------------------
Args = Mapping[str, Any]


def _first(args: Args) -> Any:
    return next(iter(args.values()))


def _str_arg(args: Args, name: str) -> str:
    value = args.get(name)
    return value if isinstance(value, str) else ""


def _center(a: Args, limit: int) -> int:
    return max(text_size(a["value"], limit), _int(a["width"]))


def _indent(a: Args, limit: int) -> int:
    text, width = _str_arg(a, "s"), a["width"]
    pad = len(width) if isinstance(width, str) else max(_int(width), 0)
    return len(text) + 1 + (text.count("\n") + 2) * (pad + 1)


def _wordwrap(a: Args, limit: int) -> int:
    text, width = _str_arg(a, "s"), max(_int(a["width"], 1), 1)
    wrap = a["wrapstring"] if isinstance(a["wrapstring"], str) else "\n"
    lines = len(text) // width + len(text.split()) + text.count("\n") + 1
    return len(text) + lines * len(wrap)


def _replace(a: Args, limit: int) -> int:
    s, old, new = a["s"], a["old"], a["new"]
    size = text_size(s, limit)
    occurrences = s.count(old) if isinstance(s, str) and isinstance(old, str) else size + 1
    if isinstance(a["count"], int) and a["count"] >= 0:
        occurrences = min(occurrences, a["count"])
    return size + occurrences * max(text_size(new, limit) - text_size(old, limit), 0)


def _format(a: Args, limit: int) -> int:
    values = a["kwargs"] or a["args"]
    return (
        printf_size(a["value"], values, limit)
        if isinstance(a["value"], str)
        else text_size(a["value"], limit)
    )


def _string(a: Args, limit: int) -> int:
    return text_size(_first(a), limit)


def _urlize(a: Args, limit: int) -> int:
    value = a["value"]
    size = text_size(value, limit)
    words = len(value.split()) if isinstance(value, str) else size
    extra = 64 + text_size(a.get("target") or "", limit) + text_size(a.get("rel") or "", limit)
    return 2 * size + words * extra


def _tojson(a: Args, limit: int) -> int:
    shape = measure(a["value"], limit)
    indent = a["indent"]
    pad = len(indent) if isinstance(indent, str) else max(_int(indent), 0)
    return shape.size + shape.nodes * (2 + pad * (shape.depth + 1))


def _pprint(a: Args, limit: int) -> int:
    shape = measure(a["value"], limit)
    return shape.size + shape.nodes * (shape.depth + 2)


def _xmlattr(a: Args, limit: int) -> int:
    shape = measure(a["d"], limit)
    return shape.size + 4 * shape.nodes


FILTER_SIZES: dict[str, Callable[[Args, int], int]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "format": _format,
    "string": _string,
    "urlencode": _string,
    "urlize": _urlize,
    "tojson": _tojson,
    "pprint": _pprint,
    "xmlattr": _xmlattr,
}
"""Filters whose output can grow beyond a constant factor of their input (join/list/sum are
replaced outright by the sandbox, because they must first materialize their iterable; truncate
never returns more than its input, whatever ``end`` is)."""


# -- str / bytes methods: name -> estimate from (self, args, kwargs) ------------------------------
def _pad(s: str | bytes, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    return max(len(s), _int(args[0] if args else kwargs.get("width")))


def _expandtabs(s: str | bytes, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    tab = _int(args[0] if args else kwargs.get("tabsize", 8), 8)
    return len(s) + s.count("\t" if isinstance(s, str) else b"\t") * max(tab, 0)  # type: ignore[arg-type]


def _method_replace(s: str | bytes, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    old, new = (list(args[:2]) + [None, None])[:2]
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    if type(old) is not type(new) or not isinstance(old, str | bytes):
        return len(s)  # a TypeError follows
    occurrences = s.count(old) if isinstance(s, type(old)) else 0  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    return len(s) + occurrences * max(len(new) - len(old), 0)


def _translate(s: str | bytes, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    table = args[0] if args else kwargs.get("table")
    values: Iterable[Any] = (
        table.values() if isinstance(table, Mapping) else table if isinstance(table, list | tuple) else ()
    )
    longest = max((len(v) for v in islice(values, limit) if isinstance(v, str)), default=1)
    return len(s) * max(longest, 1)


METHOD_SIZES: dict[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any], int], int]] = {
    "center": _pad,
    "ljust": _pad,
    "rjust": _pad,
    "zfill": _pad,
    "expandtabs": _expandtabs,
    "replace": _method_replace,
    "translate": _translate,
}
"""``str``/``bytes``/``Markup`` methods that can grow beyond a constant factor (``join`` is handled
by the sandbox, which must first materialize its iterable)."""
