"""A strict parser of Prometheus text exposition format 0.0.4 (independent of the renderer)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)$")
_HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|summary|histogram|untyped)$")
_LABEL_RE = re.compile(_LABEL)


@dataclass
class Family:
    name: str
    type: str = ""
    help: str = ""
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)


def _value(text: str) -> float:
    specials = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}
    if text in specials:
        return specials[text]
    return float(text)


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse(text: str) -> dict[str, Family]:
    """Families by name; raises AssertionError on any line that breaks the format.

    Checked: one HELP and one TYPE per family, both before its samples; samples of a family
    contiguous; no duplicate label set; counters named ``*_total`` and never negative.
    """
    assert text.endswith("\n"), "exposition must end with a newline"
    families: dict[str, Family] = {}
    current = ""
    for line in text[:-1].split("\n"):
        if m := _HELP.match(line):
            name = m.group(1)
            assert name not in families, f"second HELP for {name}"
            families[name] = Family(name, help=m.group(2))
            current = name
            continue
        if m := _TYPE.match(line):
            assert m.group(1) == current and not families[current].type, line
            families[current].type = m.group(2)
            continue
        m = _SAMPLE.match(line)
        assert m is not None, f"not a sample line: {line!r}"
        name = m.group(1)
        assert name == current, f"sample {name} outside its family ({current})"
        fam = families[name]
        assert fam.type, f"{name}: sample before TYPE"
        labels = tuple((k, _unescape(v)) for k, v in _LABEL_RE.findall(m.group(2) or ""))
        assert labels not in fam.samples, f"duplicate sample {line!r}"
        value = _value(m.group(m.lastindex or 0))
        if fam.type == "counter":
            assert name.endswith("_total"), name
            assert value >= 0, line
        fam.samples[labels] = value
    return families
