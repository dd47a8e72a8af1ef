"""Parse Prometheus text exposition 0.0.4 and OpenMetrics 1.0 text into families.

Hand-written instead of using prometheus_client's parser for two reasons:

* Speed. prometheus_client walks each line character by character in Python;
  on 100k Cerebras-like labelled samples it parsed 29k samples/s here, this
  parser 349k samples/s with a cold label cache and 367k warm (12x; one big
  scrape where 39% of label texts are new: 176k; see bench/RESULTS.md). Most
  lines take the fast path: find the braces, look the raw label text up in a
  cache (series repeat across scrapes), split off the value. Only a label text
  not seen before goes through the regex that handles escapes and quoted
  ``}`` or ``,``.
* Robustness. prometheus_client raises on the first bad line, losing the
  whole scrape; here a bad line is skipped and counted, and the rest is kept.

On valid input the result equals prometheus_client's (same families, names,
types, help, samples; tests/test_parser.py checks this differentially),
including its grouping rules: a 0.0.4 counter declared ``foo_total`` becomes
family ``foo``, one declared ``foo`` gets samples ``foo_total``; a sample whose
name its family does not allow becomes an untyped family of its own. Known
differences: 0.0.4 keeps the type ``untyped`` (prometheus_client says
``unknown``); values are always floats; OpenMetrics timestamps are float
seconds; UTF-8 quoted metric names, native histograms and, in OpenMetrics,
the whole-family checks (bucket order, grouping, clashing names, where
exemplars may appear) are not supported or enforced.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from itertools import repeat

from bridge import speedups
from bridge.model import Attrs


@dataclass(slots=True)
class Sample:
    name: str
    labels: Attrs
    value: float
    timestamp: float | None  # seconds


@dataclass(slots=True)
class Family:
    """A metric family: its metadata, and its samples as columns (the i-th sample is the i-th of each list).

    Columns, not a `Sample` per line: the classifier reads a family's names, label sets and values as
    lists, and a first scrape of 100k lines makes no object per line (bench/RESULTS.md). `samples` gives
    them as objects to readers that want them.
    """

    name: str
    type: str
    help: str
    unit: str
    names: list[str] = field(default_factory=list)
    labels: list[Attrs] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    #: each sample's own time in seconds (None where it has none); None itself when no sample has one
    timestamps: list[float | None] | None = None

    def add(self, name: str, labels: Attrs, value: float, timestamp: float | None) -> None:
        """One sample at the end of the columns; the first one with a time of its own makes the time column."""
        if timestamp is not None and self.timestamps is None:
            self.timestamps = [None] * len(self.values)
        self.names.append(name)
        self.labels.append(labels)
        self.values.append(value)
        if self.timestamps is not None:
            self.timestamps.append(timestamp)

    @property
    def samples(self) -> list[Sample]:
        """The samples as objects, new at each call (changing them changes nothing here)."""
        stamps = self.timestamps if self.timestamps is not None else repeat(None)
        return list(map(Sample, self.names, self.labels, self.values, stamps))


@dataclass(slots=True)
class ParseResult:
    families: list[Family]
    errors: int  # bad lines skipped
    error_samples: list[tuple[int, str]]  # (line number, reason) of the first few bad lines


#: Parsed label sets by raw label text, one cache per format (only OpenMetrics
#: rejects a trailing comma). Bounded in entries and in bytes of label text, so
#: neither a high-churn target nor one sending huge label values can grow it
#: without limit; cleared, not evicted, because a clear is cheap and rare.
_LABEL_CACHE_MAX = 100_000
_LABEL_CACHE_MAX_BYTES = 32 * 1024 * 1024


class _LabelCache(dict[str, Attrs]):
    """A dict that also counts the label text it holds (each text is kept twice: raw and parsed)."""

    text_bytes = 0

    def remember(self, text: str, labels: Attrs) -> None:
        if len(self) >= _LABEL_CACHE_MAX or self.text_bytes + 2 * len(text) > _LABEL_CACHE_MAX_BYTES:
            self.clear()
            self.text_bytes = 0
        self[text] = labels
        self.text_bytes += 2 * len(text)


_label_cache = _LabelCache()
_om_label_cache = _LabelCache()
#: Longest reason text kept for a bad line: the log shows an excerpt, never a 5 MB line.
_MAX_REASON = 200

_MAX_ERROR_SAMPLES = 10

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
# One `name="value"` pair and an optional comma. Label names may contain ':'
# because prometheus_client accepts it.
_LABEL_PAIR_RE = re.compile(r'[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*=[ \t]*"([^"\\]*(?:\\.[^"\\]*)*)"[ \t]*(,?)[ \t]*')
_LABEL_SET_END_RE = re.compile(r"[ \t]*\}")
_ESCAPE_RE = re.compile(r'\\[\\n"]')
_HELP_ESCAPE_RE = re.compile(r"\\[\\n]")  # 0.0.4 HELP leaves \" alone
_UNESCAPED = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}

# prometheus_client splits 0.0.4 comments on ASCII whitespace only, so HELP
# text may start with other whitespace.
_WS = "[ \t\n\r\x0b\x0c]"
_META_RE = re.compile(rf"#{_WS}+(HELP|TYPE)(?:{_WS}+([^ \t\n\r\x0b\x0c]+)(?:{_WS}+(.*))?)?\Z", re.DOTALL)
_OM_META_RE = re.compile(r"# +(HELP|TYPE|UNIT)(?: +([^ ]+)(?: +(.*))?)?\Z", re.DOTALL)

_TYPES = frozenset(
    {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset", "gaugehistogram"}
)
_OM_TYPES = _TYPES - {"untyped"}
# Sample-name suffixes a family accepts; any other name starts a new family.
_SUFFIXES = {"summary": ("_count", "_sum", ""), "histogram": ("_count", "_sum", "_bucket")}
_OM_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "histogram": ("_count", "_sum", "_bucket", "_created"),
    "gaugehistogram": ("_gcount", "_gsum", "_bucket"),
    "info": ("_info",),
}


def is_openmetrics(content_type: str | None) -> bool:
    """Whether a scrape's Content-Type says OpenMetrics text (which needs the stricter grammar)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/openmetrics-text"


def parse(text: str, *, openmetrics: bool = False) -> ParseResult:
    """Parse an exposition; bad lines are skipped and counted, never raised."""
    return _parse_openmetrics(text) if openmetrics else _parse_text(text)


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPED[match.group(0)]


def _parse_label_set(line: str, start: int, openmetrics: bool) -> tuple[Attrs, int]:
    """Parse the label set opening just before `start`; return it and the index of its '}'.

    The slow path, run once per distinct label text: it understands escapes and
    '}' or ',' inside quoted values, which the cached fast path cannot.
    """
    pairs: list[tuple[str, str]] = []
    pos = start
    while True:
        match = _LABEL_PAIR_RE.match(line, pos)
        if match is None:  # only `{}`, or a trailing comma, may end here
            end = _LABEL_SET_END_RE.match(line, pos)
            if end is None:
                raise ValueError("invalid label set")
            if pairs and openmetrics:
                raise ValueError("trailing comma in label set")
            close = end.end() - 1
            break
        key, value, comma = match.groups()
        if key.startswith("__"):
            raise ValueError(f"reserved label name {key!r}")
        if "\\" in value:
            value = _ESCAPE_RE.sub(_unescape, value)
        pairs.append((key, value))
        pos = match.end()
        if not comma:
            if line[pos : pos + 1] != "}":
                raise ValueError("invalid label set")
            close = pos
            break
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError("duplicate label name")
    return tuple(sorted(pairs)), close


def _labels(line: str, brace: int, cache: _LabelCache, openmetrics: bool) -> tuple[Attrs, int]:
    """Label set after the '{' at `brace` and the index of its '}', from the cache when possible.

    A cache hit is always right: a cached text is a complete valid label set,
    so the first '}' cannot have been inside a quoted value.
    """
    close = line.find("}", brace)
    if close > 0:
        labels = cache.get(line[brace + 1 : close])
        if labels is not None:
            return labels, close
    labels, close = _parse_label_set(line, brace + 1, openmetrics)
    cache.remember(line[brace + 1 : close], labels)
    return labels, close


def _metric_name(raw: str, names: dict[str, str]) -> str:
    """Validated metric name (whitespace before '{' dropped), memoised per parse."""
    name = names.get(raw)
    if name is None:
        name = raw.rstrip()
        if _NAME_RE.match(name) is None:
            raise ValueError(f"invalid metric name {name!r}")
        names[raw] = name
    return name


def _value(token: str) -> float:
    """A sample value; rejects what float() accepts but the format does not ('1_000', padding)."""
    if "_" in token or token != token.strip():
        raise ValueError(f"invalid value {token!r}")
    return float(token)


def _ms_timestamp(token: str) -> float:
    """0.0.4 milliseconds to seconds, dividing the exact integer like prometheus_client."""
    if "_" in token:
        raise ValueError(f"invalid timestamp {token!r}")
    try:
        return int(token) / 1000
    except ValueError:
        return float(token) / 1000


def _om_timestamp(token: str) -> float:
    """OpenMetrics seconds, computed as prometheus_client's Timestamp does (sec + nsec / 1e9)
    so the floats agree to the bit; unlike it, "-0.5" stays negative."""
    if not token or "_" in token or token != token.strip():
        raise ValueError(f"invalid timestamp {token!r}")
    try:
        return float(int(token))
    except ValueError:
        pass
    sec, _, frac = token.partition(".")
    try:
        seconds, nanos = int(sec), int(frac[:9].ljust(9, "0"))
    except ValueError:
        seconds, nanos = 0, -1
    if 0 <= nanos < 1_000_000_000:
        return float(seconds) + (-nanos if sec.startswith("-") else nanos) / 1e9
    seconds_f = float(token)
    if math.isnan(seconds_f) or math.isinf(seconds_f):
        raise ValueError(f"invalid timestamp {token!r}")
    return seconds_f


class _Errors:
    """Bad-line count plus the first few (line, reason) pairs for logs."""

    __slots__ = ("count", "samples")

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[tuple[int, str]] = []

    def add(self, lineno: int, reason: str) -> None:
        self.count += 1
        if len(self.samples) < _MAX_ERROR_SAMPLES:
            self.samples.append((lineno, reason if len(reason) <= _MAX_REASON else reason[:_MAX_REASON] + "…"))


def _no_samples() -> Family:
    """Where a family's samples gather while its metadata may still change (a family of no name yet)."""
    return Family("", "", "", "")


def _text_family(name: str, help_: str, typ: str, samples: Family) -> Family:
    """A finished 0.0.4 family (`samples` holds its samples); counters take OpenMetrics naming as in
    prometheus_client."""
    names = samples.names
    if typ == "counter":
        if name.endswith("_total"):
            name = name[:-6]
        else:
            names = [sample_name + "_total" for sample_name in names]
    return replace(samples, name=name, type=typ, help=help_, names=names)


def _parse_text(text: str) -> ParseResult:
    """Prometheus text 0.0.4, grouped into families exactly as prometheus_client.parser does."""
    families: list[Family] = []
    errors = _Errors()
    cache = _label_cache
    names: dict[str, str] = {}
    # The family being built; name '' means none (after an undeclared sample).
    name, help_, typ = "", "", "untyped"
    samples = _no_samples()
    allowed: tuple[str, ...] = ()

    lines = text.split("\n")
    run = speedups.native.sample_run if speedups.native is not None else None
    index = 0
    while index < len(lines):
        if run is not None:  # the usual sample lines in C, up to the next line that needs this code
            index = run(lines, index, names, cache, allowed, samples.names, samples.labels, samples.values)
            if samples.timestamps is not None:  # the run's samples have no time of their own
                samples.timestamps += [None] * (len(samples.values) - len(samples.timestamps))
            if index == len(lines):
                break
        raw = lines[index]
        index += 1
        lineno = index
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            meta = _META_RE.match(line)
            if meta is None:
                continue  # a plain comment
            keyword, candidate, payload = meta.groups()
            if candidate is None or _NAME_RE.match(candidate) is None:
                errors.add(lineno, f"{keyword} without a valid metric name")
                continue
            if keyword == "HELP":
                if candidate != name:
                    if name:
                        families.append(_text_family(name, help_, typ, samples))
                    name, typ, samples, allowed = candidate, "untyped", _no_samples(), (candidate,)
                help_ = _HELP_ESCAPE_RE.sub(_unescape, payload) if payload else ""
            else:
                if payload not in _TYPES:
                    errors.add(lineno, f"unknown metric type {payload!r}")
                    continue
                if candidate != name:
                    if name:
                        families.append(_text_family(name, help_, typ, samples))
                    name, help_, samples = candidate, "", _no_samples()
                typ = payload
                allowed = tuple(name + suffix for suffix in _SUFFIXES.get(typ, ("",)))
            continue

        try:
            brace = line.find("{")
            if brace < 0:
                tokens = line.split()
                sample_name = _metric_name(tokens[0], names)
                del tokens[0]
                labels: Attrs = ()
            else:  # the usual line, with both lookups inlined: a name and a label text seen before
                raw_name = line[:brace]
                sample_name = names.get(raw_name) or _metric_name(raw_name, names)
                close = line.find("}", brace)
                cached = cache.get(line[brace + 1 : close]) if close > 0 else None
                if cached is None:
                    labels, close = _labels(line, brace, cache, False)
                else:
                    labels = cached
                tokens = line[close + 1 :].split()
            timestamp = None
            if len(tokens) == 1:
                token = tokens[0]  # split: no surrounding whitespace for `_value` to find
                if "_" in token:
                    raise ValueError(f"invalid value {token!r}")
                value = float(token)
            elif len(tokens) == 2:
                value, timestamp = _value(tokens[0]), _ms_timestamp(tokens[1])
            else:
                raise ValueError("expected a value and an optional timestamp")
        except (ValueError, OverflowError) as exc:  # OverflowError: a huge timestamp
            errors.add(lineno, str(exc))
            continue

        if sample_name in allowed:
            samples.add(sample_name, labels, value, timestamp)
        else:  # not part of the current family: an untyped family of its own
            if name:
                families.append(_text_family(name, help_, typ, samples))
            name, help_, typ, samples, allowed = "", "", "untyped", _no_samples(), ()
            families.append(Family(sample_name, "untyped", "", ""))
            families[-1].add(sample_name, labels, value, timestamp)

    if name:
        families.append(_text_family(name, help_, typ, samples))
    return ParseResult(families, errors.count, errors.samples)


def _om_sample(line: str, cache: _LabelCache, names: dict[str, str]) -> Sample:
    """One OpenMetrics sample line; an exemplar is checked for form and dropped."""
    space = line.find(" ")
    brace = line.find("{")
    if brace >= 0 and (space < 0 or brace < space):
        sample_name = _metric_name(line[:brace], names)
        labels, close = _labels(line, brace, cache, True)
        if line[close + 1 : close + 2] != " ":
            raise ValueError("expected a space after the label set")
        rest = line[close + 2 :]
    else:
        if space < 0:
            raise ValueError("missing value")
        sample_name = _metric_name(line[:space], names)
        labels = ()
        rest = line[space + 1 :]

    token, sep, tail = rest.partition(" ")
    value = _value(token)
    timestamp = None
    if sep:
        if tail.startswith("#"):
            exemplar = tail
        else:
            token, sep, exemplar = tail.partition(" ")
            timestamp = _om_timestamp(token)
            if sep and not exemplar:
                raise ValueError("trailing space")
        if exemplar:
            _check_exemplar(exemplar)
    return Sample(sample_name, labels, value, timestamp)


def _check_exemplar(text: str) -> None:
    """Validate `# {labels} value [timestamp]` so a malformed exemplar marks the line bad."""
    if not text.startswith("# {"):
        raise ValueError("invalid exemplar")
    _, close = _parse_label_set(text, 3, True)
    if text[close + 1 : close + 2] != " ":
        raise ValueError("invalid exemplar")
    token, space, timestamp = text[close + 2 :].partition(" ")
    _value(token)
    if space:
        _om_timestamp(timestamp)


def _parse_openmetrics(text: str) -> ParseResult:
    """OpenMetrics 1.0 text, grouped as prometheus_client.openmetrics.parser does."""
    families: list[Family] = []
    errors = _Errors()
    cache = _om_label_cache
    names: dict[str, str] = {}
    # The family being built; fields are None until declared.
    name: str | None = None
    help_: str | None = None
    typ: str | None = None
    unit: str | None = None
    samples = _no_samples()
    allowed: tuple[str, ...] = ()

    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends a line, it does not start one
    # No CR stripping: OpenMetrics lines end in LF, and a HELP text may end in CR.
    eof = False
    for lineno, line in enumerate(lines, 1):
        if eof:
            errors.add(lineno, "line after # EOF")
            continue
        if not line:
            errors.add(lineno, "blank line")
            continue
        if line == "# EOF":
            eof = True
            continue
        if line[0] == "#":
            meta = _OM_META_RE.match(line)
            if meta is None:
                errors.add(lineno, "comment other than HELP, TYPE or UNIT")
                continue
            keyword, candidate, payload = meta.groups()
            payload = payload or ""
            if candidate is None or _NAME_RE.match(candidate) is None:
                errors.add(lineno, f"{keyword} without a valid metric name")
                continue
            same = candidate == name
            if same and samples.values:
                errors.add(lineno, "metadata after samples")
                continue
            if keyword == "TYPE" and payload not in _OM_TYPES:
                errors.add(lineno, f"unknown metric type {payload!r}")
                continue
            if same and {"HELP": help_, "TYPE": typ, "UNIT": unit}[keyword] is not None:
                errors.add(lineno, f"second {keyword} for {candidate}")
                continue
            if not same:
                if name is not None:
                    families.append(_om_family(name, typ, help_, unit, samples))
                name, help_, typ, unit, samples, allowed = candidate, None, None, None, _no_samples(), (candidate,)
            if keyword == "HELP":
                help_ = _ESCAPE_RE.sub(_unescape, payload) if "\\" in payload else payload
            elif keyword == "TYPE":
                typ = payload
                allowed = tuple(candidate + suffix for suffix in _OM_SUFFIXES.get(typ, ("",)))
            else:
                unit = payload
            continue

        try:
            sample = _om_sample(line, cache, names)
        except (ValueError, OverflowError) as exc:  # OverflowError: a huge timestamp
            errors.add(lineno, str(exc))
            continue
        if sample.name not in allowed:  # starts an undeclared family
            if name is not None:
                families.append(_om_family(name, typ, help_, unit, samples))
            name, help_, typ, unit, samples, allowed = sample.name, None, "unknown", None, _no_samples(), (sample.name,)
        samples.add(sample.name, sample.labels, sample.value, sample.timestamp)

    if name is not None:
        families.append(_om_family(name, typ, help_, unit, samples))
    if not eof:
        errors.add(len(lines) + 1, "missing # EOF")
    return ParseResult(families, errors.count, errors.samples)


def _om_family(name: str, typ: str | None, help_: str | None, unit: str | None, samples: Family) -> Family:
    """A finished OpenMetrics family; what was never declared takes the defaults prometheus_client gives."""
    return replace(samples, name=name, type=typ or "unknown", help=help_ or "", unit=unit or "")
