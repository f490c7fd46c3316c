"""SMS segment counting (GSM 03.38 / UCS-2), as carriers bill it."""

from __future__ import annotations

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""GSM-7 default alphabet (one septet each); the escape code 0x1B itself is not a character."""

GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
"""GSM-7 extension table: each costs two septets (escape + char)."""

GSM7 = "GSM-7"
UCS2 = "UCS-2"


def gsm7_septets(text: str) -> int | None:
    """Septets needed for ``text`` in GSM-7, or ``None`` when it needs UCS-2."""
    total = 0
    for ch in text:
        if ch in GSM7_BASIC:
            total += 1
        elif ch in GSM7_EXTENSION:
            total += 2
        else:
            return None
    return total


def _ucs2_units(text: str) -> int:
    # UTF-16 code units: characters outside the BMP (most emoji) take two.
    return len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> tuple[int, str]:
    """``(segments, encoding)`` for an SMS body.

    GSM-7: 160 septets in one segment, 153 per part when concatenated (an extension character
    never splits across parts, so a part may hold 152). UCS-2: 70 / 67 code units (a surrogate
    pair never splits). An empty body is one segment.
    """
    septets = gsm7_septets(text)
    if septets is not None:
        if septets <= 160:
            return 1, GSM7
        return _pack([2 if ch in GSM7_EXTENSION else 1 for ch in text], 153), GSM7
    units = _ucs2_units(text)
    if units <= 70:
        return 1, UCS2
    return _pack([2 if ord(ch) > 0xFFFF else 1 for ch in text], 67), UCS2


def _pack(costs: list[int], per_part: int) -> int:
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts += 1
            used = 0
        used += cost
    return parts
