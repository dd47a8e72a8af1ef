"""RE2 patterns (Prometheus' regex syntax) run by Python's `re`, with the same matches or a refusal.

Python's `re` is a superset of RE2 in some places (backreferences, lookarounds,
possessive and atomic groups, `\\Z`) and reads a few RE2 forms differently
(`[[:alpha:]]`, `(?<name>`, `$`, `{,n}`, a flag group in mid-pattern). `translate`
rewrites what it can honour and refuses the rest, so a config means what it
means in Prometheus or is rejected with its YAML path. Matching is ASCII for
`\\d`, `\\w`, `\\b` and case folding (`re.ASCII`), as RE2's classes are.
"""

from __future__ import annotations

import re

#: RE2's POSIX classes, as the ASCII ranges they stand for inside a bracket expression.
_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_RE2_SPACE = "\\t\\n\\f\\r "  # RE2's \s has no \v, Python's has
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([a-zA-Z-]*)([:)])")
_MAX_REPEAT = 1000  # RE2 refuses larger counts
_REFUSED_GROUPS = {
    "(?=": "lookahead",
    "(?!": "lookahead",
    "(?<=": "lookbehind",
    "(?<!": "lookbehind",
    "(?>": "atomic group",
    "(?#": "comment group",
    "(?(": "conditional group",
    "(?P=": "backreference",
    "(?P>": "recursion",
}


def compile_re2(pattern: str) -> re.Pattern[str]:
    """The pattern for `fullmatch` (Prometheus anchors every relabel regex as `^(?s:...)$`)."""
    try:
        return re.compile(translate(pattern), re.ASCII | re.DOTALL)
    except (re.error, OverflowError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"not a valid regular expression: {reason}") from None


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.out: list[str] = []
        self.multiline = bool(re.search(r"\(\?[a-zA-Z]*m", pattern))  # `$` is Python's own then
        self.flag_groups: list[list[str]] = [[]]  # per open group: flags set by `(?i)` inside it, in order

    def refuse(self, what: str) -> ValueError:
        return ValueError(f"{what}: not supported (Prometheus' RE2 refuses it, or Python's re would match differently)")

    def run(self) -> str:
        p, i = self.pattern, 0
        while i < len(p):
            if p[i] == "\\":
                i = self.quantifier(self.escape(i))
            elif p[i] == "[":
                i = self.quantifier(self.bracket(i))
            else:
                i = self.token(i)
        self.out.append(")" * len(self.flag_groups[-1]))
        return "".join(self.out)

    def escape(self, i: int, in_class: bool = False) -> int:
        p = self.pattern
        if i + 1 >= len(p):
            raise ValueError("not a valid regular expression: trailing backslash")
        e = p[i + 1]
        if e.isdigit():
            raise self.refuse(f"\\{e} (a backreference or octal escape)")
        if e == "Z":
            raise self.refuse("\\Z (RE2 spells it \\z)")
        if e == "z" and not in_class:
            self.out.append("\\Z")
        elif e == "s":
            self.out.append(_RE2_SPACE if in_class else f"[{_RE2_SPACE}]")
        elif e == "S" and in_class:
            raise self.refuse("\\S inside a bracket expression")
        elif e == "S":
            self.out.append(f"[^{_RE2_SPACE}]")
        else:
            self.out.append(p[i : i + 2])
        return i + 2

    def bracket(self, i: int) -> int:
        """A bracket expression from its `[` to after its `]`: POSIX classes expanded, set operators literal."""
        p = self.pattern
        self.out.append("[")
        i += 1
        if p.startswith("^", i):
            self.out.append("^")
            i += 1
        first = True
        while i < len(p):
            c = p[i]
            if c == "]" and not first:
                self.out.append("]")
                return i + 1
            first = False
            if c == "\\":
                i = self.escape(i, in_class=True)
            elif p.startswith("[:", i) and (end := p.find(":]", i + 2)) > 0:
                name = p[i + 2 : end]
                if name not in _POSIX:
                    raise self.refuse(f"[:{name}:]")
                self.out.append(_POSIX[name])
                i = end + 2
            else:
                self.out.append("\\" + c if c in "[&~|" else c)  # Python reads [[, &&, ~~, || as set operators
                i += 1
        raise ValueError("not a valid regular expression: missing closing ]")

    def token(self, i: int) -> int:
        c = self.pattern[i]
        if c == "(":
            return self.group(i)
        if c == ")":
            closers = len(self.flag_groups.pop()) if len(self.flag_groups) > 1 else 0
            self.out.append(")" * closers + ")")
            return self.quantifier(i + 1)
        if c == "|":
            flags = self.flag_groups[-1]
            self.out.append(")" * len(flags) + "|" + "".join(f"(?{f}:" for f in flags))
            return i + 1
        if c in "^$":
            self.out.append("\\Z" if c == "$" and not self.multiline else c)
            return i + 1
        if c in "*+?":  # nothing to repeat: Python refuses it as RE2 does
            self.out.append(c)
            return i + 1
        self.out.append("\\{" if c == "{" else c)  # a `{` that is no repeat is a literal, as in RE2
        return self.quantifier(i + 1)

    def group(self, i: int) -> int:
        p = self.pattern
        for prefix, what in _REFUSED_GROUPS.items():
            if p.startswith(prefix, i):
                raise self.refuse(f"{prefix}...) ({what})")
        self.flag_groups.append([])
        if p.startswith("(?<", i):
            self.out.append("(?P<")  # RE2's other spelling of a named group
            return i + 3
        flags = _FLAGS.match(p, i)
        if flags is None:
            self.out.append("(")
            return i + 1
        letters, end = flags.group(1), flags.group(2)
        if not letters or set(letters) - set("ims-"):
            raise self.refuse(f"the flag group (?{letters}{end} (only i, m and s)")
        self.out.append(f"(?{letters}:")
        if end == ")":  # `(?i)`: RE2 applies it to the rest of the enclosing group, Python only at the very start
            self.flag_groups.pop()
            self.flag_groups[-1].append(letters)
        return flags.end()

    def quantifier(self, i: int) -> int:
        """After an atom: its repeat, checked as RE2 checks it (counts up to 1000, no possessive, no nesting)."""
        p = self.pattern
        repeat = _REPEAT.match(p, i)
        if repeat is not None:
            if any(int(n) > _MAX_REPEAT for n in repeat.groups() if n):
                raise self.refuse(f"a repeat count over {_MAX_REPEAT}")
            self.out.append(repeat.group(0))
            i = repeat.end()
        elif p.startswith(("*", "+", "?"), i):
            self.out.append(p[i])
            i += 1
        else:
            return i
        if p.startswith("?", i):  # lazy: the same in both
            self.out.append("?")
            return i + 1
        if p.startswith("+", i):
            raise self.refuse("a possessive repeat (*+, ++, ?+, {n}+)")
        if p.startswith("*", i) or _REPEAT.match(p, i):
            raise self.refuse("a repeat of a repeat")
        return i


def translate(pattern: str) -> str:
    """The Python pattern for an RE2 pattern, or ValueError saying what cannot be honoured."""
    return _Translator(pattern).run()
