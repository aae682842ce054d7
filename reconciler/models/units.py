"""Durations and sizes: exact parsing and formatting, both ways.

Durations are integer nanoseconds on the JetStream wire; sizes are integer bytes.
Parsing never goes through floats: ``"1.001s"`` is exactly 1_001_000_000 ns, and
``format_duration``/``format_size`` produce strings that parse back to the same int.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from functools import lru_cache

NS_PER = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}
# Largest first: the order format_duration decomposes a value in.
_DURATION_FORMAT_UNITS = ("d", "h", "m", "s", "ms", "us", "ns")

SIZE_UNITS = {
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
}
_SIZE_NAMES = {k: k[0].upper() + k[1:-1] + "B" if len(k) == 3 else k.upper() for k in SIZE_UNITS}
_SIZE_NAMES["b"] = "B"

_DURATION_TOKEN = re.compile(r"(\d+(?:\.\d+)?|\.\d+)([a-zµμ]+)")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")


class UnitError(ValueError):
    """A duration or size string that does not parse; the message says why."""


def _json(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def parse_duration(value: int | str) -> int:
    """Parse ``"250ms"``, ``"90s"``, ``"1h30m"``, ``"7d"`` or int nanoseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise UnitError(
            f'expected a duration like "30s" or an integer of nanoseconds, got {_json(value)}'
        )
    return _duration_text(value)


@lru_cache(maxsize=4096)  # manifests repeat a few values ("7d", "30s") thousands of times
def _duration_text(value: str) -> int:
    text = value.strip()
    if not text:
        raise UnitError('invalid duration "": empty (write e.g. "30s", or 0)')
    if text.startswith("-"):
        if re.fullmatch(r"-0+", text):
            return 0
        raise UnitError(f"invalid duration {_json(value)}: a duration cannot be negative")
    if re.fullmatch(r"\d+", text):
        if int(text) == 0:
            return 0
        raise UnitError(f'invalid duration {_json(value)}: missing unit (e.g. "{text}s")')
    pos = 0
    total = Fraction(0)
    for match in _DURATION_TOKEN.finditer(text):
        if match.start() != pos:
            break
        number, unit = match.groups()
        if unit not in NS_PER:
            raise UnitError(
                f'invalid duration {_json(value)}: unknown unit "{unit}" '
                "(use ns, us, ms, s, m, h, d)"
            )
        total += Fraction(number) * NS_PER[unit]
        pos = match.end()
    if pos != len(text):
        raise UnitError(
            f'invalid duration {_json(value)}: expected e.g. "250ms", "90s", "1h30m", "7d"'
        )
    if total.denominator != 1:
        raise UnitError(f"invalid duration {_json(value)}: not a whole number of nanoseconds")
    return int(total)


def format_duration(ns: int) -> str:
    """The shortest exact human form: 5_400_000_000_000 -> ``"1h30m"``."""
    if ns == 0:
        return "0s"
    if ns < 0:
        return str(ns)
    parts = []
    rest = ns
    for unit in _DURATION_FORMAT_UNITS:
        step = NS_PER[unit]
        count, rest = divmod(rest, step)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_size(value: int | str) -> int:
    """Parse ``"10GiB"`` (1024^3), ``"500MB"`` (1000^2), ``"512B"`` or int bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise UnitError(f'expected a size like "10GiB" or an integer of bytes, got {_json(value)}')
    return _size_text(value)


@lru_cache(maxsize=4096)
def _size_text(value: str) -> int:
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    match = _SIZE_RE.match(text)
    if not match:
        raise UnitError(f'invalid size {_json(value)}: expected e.g. "10GiB", "500MB" or bytes')
    number, unit = match.groups()
    key = unit.lower()
    if key not in SIZE_UNITS:
        hint = ""
        if key in ("k", "m", "g", "t", "p"):
            hint = f' (write "{number}{unit.upper()}iB" for 1024^n or "{number}{unit.upper()}B"'
            hint += " for 1000^n)"
        raise UnitError(
            f'invalid size {_json(value)}: unknown unit "{unit}"{hint}'
            if hint
            else f'invalid size {_json(value)}: unknown unit "{unit}" (use B, KiB, MiB, GiB, TiB, '
            "KB, MB, GB, TB)"
        )
    total = Fraction(number) * SIZE_UNITS[key]
    if total.denominator != 1:
        raise UnitError(f"invalid size {_json(value)}: not a whole number of bytes")
    return int(total)


def format_size(n: int) -> str:
    """The shortest exact unit, binary or decimal (a tie goes to binary): 10 * 1024**3 ->
    ``"10GiB"``, 10**10 -> ``"10GB"``, 1536 -> ``"1536B"``; -1 and 0 stay ``"-1"``, ``"0"``."""
    if n <= 0:
        return str(n)
    best = f"{n}B"
    for key in ("pib", "tib", "gib", "mib", "kib", "pb", "tb", "gb", "mb", "kb"):
        step = SIZE_UNITS[key]
        if n % step == 0 and len(text := f"{n // step}{_SIZE_NAMES[key]}") < len(best):
            best = text
    return best
