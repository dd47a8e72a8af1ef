"""bridge.parser: same result as prometheus_client on valid input, bad lines skipped and counted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_reference,
)
from prometheus_client.parser import text_string_to_metric_families as text_reference

from bridge import parser
from bridge.parser import Family, Sample, is_openmetrics, parse
from tests.conftest import FIXTURES as FIXTURE_DIR

FIXTURES = sorted(FIXTURE_DIR.glob("*/*.prom"))

# ---------------------------------------------------------------------------
# Comparison with prometheus_client


def _number(value: float) -> float | str:
    """A value comparable with ==, NaN included; prometheus_client keeps ints, we give floats."""
    return "NaN" if math.isnan(value) else float(value)


def _reference(text: str, openmetrics: bool) -> list[tuple]:
    families = (om_reference if openmetrics else text_reference)(text)
    return [
        (
            f.name,
            f.type,
            f.documentation,
            f.unit,
            [
                (s.name, s.labels, _number(s.value), None if s.timestamp is None else float(s.timestamp))
                for s in f.samples
            ],
        )
        for f in families
    ]


def _ours(families: list[Family]) -> list[tuple]:
    for f in families:
        for s in f.samples:
            assert list(s.labels) == sorted(s.labels), "labels must be sorted by key"
    return [
        (
            f.name,
            "unknown" if f.type == "untyped" else f.type,  # prometheus_client renames untyped
            f.help,
            f.unit,
            [(s.name, dict(s.labels), _number(s.value), s.timestamp) for s in f.samples],
        )
        for f in families
    ]


def assert_matches_reference(text: str, openmetrics: bool = False) -> None:
    result = parse(text, openmetrics=openmetrics)
    assert result.errors == 0, result.error_samples
    assert _ours(result.families) == _reference(text, openmetrics)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_matches_prometheus_client(path: Path) -> None:
    text = path.read_bytes().decode()  # as written: read_text() would turn a CRLF file into LF
    lf = text.replace("\r\n", "\n")
    assert_matches_reference(text)
    assert_matches_reference(lf)
    assert_matches_reference(lf.replace("\n", "\r\n"))


def test_fixtures_present() -> None:
    """The cases the fixtures README promises, each in a file of its own."""
    names = {f"{p.parent.name}/{p.name}" for p in FIXTURES}
    assert {
        "cerebras/single-endpoint-all-families.prom",
        "cerebras/two-endpoints-mixed-labels.prom",
        "cerebras/idle-down-unknown.prom",
        "cerebras/crlf-windows-capture.prom",
        "exporter/http-service.prom",
    } <= names
    assert b"\r\n" in (FIXTURE_DIR / "cerebras" / "crlf-windows-capture.prom").read_bytes()


# ---------------------------------------------------------------------------
# Generated valid 0.0.4 expositions

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters='\n"\\')
# Exposition text of a label value: any character, the three escapes, and an
# unknown escape that must stay as written.
label_value_text = st.lists(st.one_of(_chars, st.sampled_from(["\\\\", '\\"', "\\n", "\\t"])), max_size=8).map("".join)
help_text = st.lists(
    st.one_of(_chars, st.sampled_from(['"', "\\\\", "\\n", '\\"', "\\x", " ", "\t"])), max_size=12
).map("".join)
label_name = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,5}", fullmatch=True).filter(lambda n: not n.startswith("__"))
value_text = st.one_of(
    st.floats().map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["NaN", "nan", "+Inf", "-Inf", "Inf", "0", "-0", "1e3", "1.5E-3", "+7", ".5"]),
)
space = st.sampled_from([" ", "\t", "  ", " \t "])
base_name = st.sampled_from(["foo", "a:b", "_x", "requests_count", "ttft_seconds", "foo_total"])
suffix = st.sampled_from(["", "", "_total", "_count", "_sum", "_bucket", "_created"])


@st.composite
def label_set(draw: st.DrawFn, openmetrics: bool = False) -> str:
    """`{...}` or nothing; 0.0.4 also gets whitespace and a trailing comma."""
    # OpenMetrics families add le, quantile or (statesets) their own name, which all end in a digit.
    keys = label_name
    if openmetrics:
        keys = label_name.filter(lambda n: n not in ("le", "quantile") and not n[-1].isdigit())
    labels = draw(st.dictionaries(keys, label_value_text, max_size=3))
    if not labels and draw(st.booleans()):
        return ""
    if openmetrics:
        return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    pad = st.sampled_from(["", " ", "\t"])
    pairs = [f'{draw(pad)}{k}{draw(pad)}={draw(pad)}"{v}"{draw(pad)}' for k, v in labels.items()]
    trailing = "," if pairs and draw(st.booleans()) else ""
    return "{" + ",".join(pairs) + trailing + draw(pad) + "}"


@st.composite
def text_sample_line(draw: st.DrawFn, family: str) -> str:
    name = draw(st.one_of(st.just(family), base_name)) + draw(suffix)
    labels = draw(label_set())
    gap = draw(st.sampled_from(["", " "])) if labels else ""
    line = f"{draw(st.sampled_from(['', ' ']))}{name}{gap}{labels}{draw(space)}{draw(value_text)}"
    timestamp = draw(st.none() | st.integers(-(2**40), 2**45))
    if timestamp is not None:
        line += f"{draw(space)}{timestamp}"
    return line + draw(st.sampled_from(["", " ", "\t"]))


@st.composite
def text_family(draw: st.DrawFn) -> list[str]:
    name = draw(base_name) + draw(suffix)
    meta = []
    if draw(st.booleans()):
        help_ = draw(help_text)
        meta.append(f"#{draw(space)}HELP{draw(space)}{name}" + (f"{draw(space)}{help_}" if help_ else ""))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "untyped"]))
        meta.append(f"# TYPE{draw(space)}{name}{draw(space)}{kind}")
    meta = draw(st.permutations(meta))
    samples = draw(st.lists(text_sample_line(name), max_size=5))
    extras = draw(st.lists(st.sampled_from(["", "# a comment", "#", "# HELPER x", "  "]), max_size=2))
    return [*extras, *meta, *samples]


@st.composite
def text_exposition(draw: st.DrawFn) -> tuple[list[str], str]:
    """Lines of a valid 0.0.4 exposition and the newline that joins them."""
    lines = [line for family in draw(st.lists(text_family(), max_size=6)) for line in family]
    return lines, draw(st.sampled_from(["\n", "\r\n"]))


@settings(max_examples=200, deadline=None)
@given(text_exposition())
def test_text_format_matches_prometheus_client(exposition: tuple[list[str], str]) -> None:
    lines, newline = exposition
    assert_matches_reference(newline.join(lines) + newline)


# ---------------------------------------------------------------------------
# Generated valid OpenMetrics expositions

om_value = st.one_of(
    st.floats().map(repr), st.integers(-(10**6), 10**6).map(str), st.sampled_from(["NaN", "+Inf", "-Inf"])
)
om_count = st.one_of(st.floats(min_value=0, allow_nan=False).map(repr), st.integers(0, 10**6).map(str))
om_timestamp = st.one_of(
    st.integers(0, 2**34).map(str),
    st.tuples(st.integers(0, 2**34), st.from_regex(r"[0-9]{1,9}", fullmatch=True)).map(lambda t: f"{t[0]}.{t[1]}"),
)
exemplar = st.builds(
    lambda value, ts: f' # {{trace_id="{value}"}} 1.5' + ("" if ts is None else f" {ts}"),
    st.from_regex(r"[a-z0-9]{0,12}", fullmatch=True),
    st.none() | om_timestamp,
)


def _label(key: str, value: object) -> str:
    return f'{key}="{value}"'


def _with(labels: str, extra: str) -> str:
    """Add one label to a rendered label set (which may be empty)."""
    inner = labels[1:-1]
    return "{" + (inner + "," if inner else "") + extra + "}"


OM_TYPES = ["counter", "gauge", "histogram", "gaugehistogram", "summary", "unknown", "info", "stateset"]


@st.composite
def om_family(draw: st.DrawFn, index: int) -> list[str]:
    kind = draw(st.sampled_from([*OM_TYPES, None]))
    unit = "" if kind in ("info", "stateset") else draw(st.sampled_from(["", "seconds"]))
    name = draw(st.sampled_from(["a", "b:c", "d_e", "_f"] if kind != "stateset" else ["a", "d_e"])) + str(index)
    if unit:
        name += "_" + unit
    meta = []
    if draw(st.booleans()):
        meta.append(f"# HELP {name} {draw(help_text)}")
    if kind is not None:
        meta.append(f"# TYPE {name} {kind}")
    if unit and draw(st.booleans()):
        meta.append(f"# UNIT {name} {unit}")
    meta = draw(st.permutations(meta))

    timestamp = draw(st.none() | om_timestamp)
    end = "" if timestamp is None else f" {timestamp}"
    # `{}` and no braces are the same series, which may appear only once.
    label_sets = draw(st.lists(label_set(openmetrics=True), max_size=3, unique_by=lambda labels: labels or "{}"))
    return [*meta, *(line for labels in label_sets for line in _om_series(draw, kind, name, labels, end))]


def _om_series(draw: st.DrawFn, kind: str | None, name: str, labels: str, end: str) -> list[str]:
    """The samples of one series, valid for the family's type."""
    if kind == "counter":
        lines = [f"{name}_total{labels} {draw(om_count)}{end}{draw(st.just('') | exemplar)}"]
        if draw(st.booleans()):
            lines.append(f"{name}_created{labels} {draw(om_count)}{end}")
        return lines
    if kind == "info":
        return [f"{name}_info{labels} 1{end}"]
    if kind == "stateset":
        states = [_with(labels, _label(name, state)) for state in ("on", "off")]
        return [f"{name}{state} {draw(st.sampled_from(['0', '1']))}{end}" for state in states]
    if kind == "summary":
        quantiles = sorted(draw(st.sets(st.sampled_from([0.0, 0.5, 0.9, 1.0]))))
        quantile_labels = [_with(labels, _label("quantile", q)) for q in quantiles]
        lines = [f"{name}{q} {draw(om_count | st.just('NaN'))}{end}" for q in quantile_labels]
        if draw(st.booleans()):
            lines.append(f"{name}_count{labels} {draw(st.integers(0, 99))}{end}")
            lines.append(f"{name}_sum{labels} {draw(om_count)}{end}")
        return lines
    if kind in ("histogram", "gaugehistogram"):
        bounds = [*sorted(draw(st.sets(st.sampled_from(["0.1", "1.0", "2.5", "10"]))), key=float), "+Inf"]
        counts = sorted(draw(st.lists(st.integers(0, 50), min_size=len(bounds), max_size=len(bounds))))
        lines = [
            f"{name}_bucket{_with(labels, _label('le', le))} {count}{end}{draw(st.just('') | exemplar)}"
            for le, count in zip(bounds, counts, strict=True)
        ]
        if draw(st.booleans()):
            count, total = ("_count", "_sum") if kind == "histogram" else ("_gcount", "_gsum")
            lines += [f"{name}{count}{labels} {counts[-1]}{end}", f"{name}{total}{labels} {draw(om_count)}{end}"]
        if kind == "histogram" and draw(st.booleans()):
            lines.append(f"{name}_created{labels} {draw(om_count)}{end}")
        return lines
    return [f"{name}{labels} {draw(om_value)}{end}"]


@st.composite
def om_exposition(draw: st.DrawFn) -> str:
    count = draw(st.integers(0, 5))
    lines = [line for index in range(count) for line in draw(om_family(index))]
    return "".join(line + "\n" for line in lines) + draw(st.sampled_from(["# EOF\n", "# EOF"]))


@settings(max_examples=200, deadline=None)
@given(om_exposition())
def test_openmetrics_matches_prometheus_client(text: str) -> None:
    assert_matches_reference(text, openmetrics=True)


def test_openmetrics_example() -> None:
    text = (
        "# HELP acme_http_requests Requests.\n"
        "# TYPE acme_http_requests counter\n"
        'acme_http_requests_total{code="200"} 1027 1395066363.5 # {trace_id="KOO5S4vxi0o"} 0.67\n'
        'acme_http_requests_created{code="200"} 1395066363.25 1395066363.5\n'
        "# TYPE latency_seconds histogram\n"
        "# UNIT latency_seconds seconds\n"
        'latency_seconds_bucket{le="0.5"} 3\n'
        'latency_seconds_bucket{le="+Inf"} 4\n'
        "latency_seconds_count 4\n"
        "latency_seconds_sum 1.5\n"
        'undeclared{a="1"} 7\n'
        'undeclared{a="2"} 8\n'
        "# EOF\n"
    )
    assert_matches_reference(text, openmetrics=True)
    families = parse(text, openmetrics=True).families
    assert [(f.name, f.type, f.unit) for f in families] == [
        ("acme_http_requests", "counter", ""),
        ("latency_seconds", "histogram", "seconds"),
        ("undeclared", "unknown", ""),
    ]
    assert families[0].samples[0] == Sample("acme_http_requests_total", (("code", "200"),), 1027.0, 1395066363.5)
    assert len(families[2].samples) == 2  # unlike 0.0.4, one undeclared family takes repeats


# ---------------------------------------------------------------------------
# The grouping rules, spelled out


def _shape(text: str) -> list[tuple[str, str, list[str]]]:
    return [(f.name, f.type, [s.name for s in f.samples]) for f in parse(text).families]


def test_counter_naming() -> None:
    assert _shape("# TYPE foo_total counter\nfoo_total 1\n") == [("foo", "counter", ["foo_total"])]
    assert _shape("# TYPE foo counter\nfoo 1\n") == [("foo", "counter", ["foo_total"])]
    assert _shape("# TYPE requests_count_total gauge\nrequests_count_total 1\n") == [
        ("requests_count_total", "gauge", ["requests_count_total"])
    ]


def test_samples_outside_their_family_become_untyped_singletons() -> None:
    text = '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\nh_created 5\nh_sum 2\nx 1\nx 2\n'
    assert _shape(text) == [
        ("h", "histogram", ["h_bucket", "h_count"]),
        ("h_created", "untyped", ["h_created"]),
        ("h_sum", "untyped", ["h_sum"]),
        ("x", "untyped", ["x"]),
        ("x", "untyped", ["x"]),
    ]


def test_values_timestamps_escapes_and_help() -> None:
    text = (
        "# TYPE t gauge\r\n"
        '# HELP t line one\\nback\\\\slash \\"kept\\"\r\n'
        't{b="x",a="q\\"uote\\\\ \\n} \\t" } 1.5e3 1700000000123\r\n'
        "t NaN\r\n"
        "t\t-Inf  \t 5\r\n"
    )
    (family,) = parse(text).families
    assert family.help == 'line one\nback\\slash \\"kept\\"'
    first, nan, inf = family.samples
    assert first == Sample("t", (("a", 'q"uote\\ \n} \\t'), ("b", "x")), 1500.0, 1700000000.123)
    assert math.isnan(nan.value) and nan.timestamp is None
    assert inf.value == -math.inf and inf.timestamp == 0.005


# ---------------------------------------------------------------------------
# Bad lines

BAD_TEXT_LINES = [
    "this is garbage",
    'foo{a="unterminated} 1',
    'foo{a="b"} notanumber',
    'foo{a="b"} 1 2 3',
    "foo 1_000",
    "foo 1 " + "9" * 400,
    "foo",
    "1foo 2",
    'foo{a="b",a="c"} 1',
    'foo{__reserved="b"} 1',
    'foo{a="b" c="d"} 1',
    '{a="b"} 1',
    "# TYPE foo nonsense",
    "# TYPE foo",
    "# HELP",
]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_bad_lines_are_skipped_and_counted(path: Path) -> None:
    good = path.read_text().splitlines()
    step = max(1, len(good) // len(BAD_TEXT_LINES))
    lines, bad_numbers = [], []
    for i, line in enumerate(good):
        if i % step == 0 and len(bad_numbers) < len(BAD_TEXT_LINES):
            lines.append(BAD_TEXT_LINES[len(bad_numbers)])
            bad_numbers.append(len(lines))
        lines.append(line)

    result = parse("\n".join(lines))
    assert result.errors == len(BAD_TEXT_LINES)
    assert [n for n, _ in result.error_samples] == bad_numbers[:10]
    assert all(reason for _, reason in result.error_samples)
    assert _ours(result.families) == _reference(path.read_text(), openmetrics=False)


@settings(max_examples=100, deadline=None)
@given(text_exposition(), st.lists(st.tuples(st.integers(0, 50), st.sampled_from(BAD_TEXT_LINES)), max_size=5))
def test_bad_lines_do_not_disturb_generated_input(
    exposition: tuple[list[str], str], bad: list[tuple[int, str]]
) -> None:
    lines, newline = exposition
    mixed = list(lines)
    for position, line in bad:
        mixed.insert(position % (len(mixed) + 1), line)
    result = parse(newline.join(mixed))
    assert result.errors == len(bad)
    assert _ours(result.families) == _reference(newline.join(lines), openmetrics=False)


def test_openmetrics_bad_lines() -> None:
    good = ["# TYPE g gauge", 'g{a="1"} 1', 'g{a="2"} 2', "# TYPE c counter", "c_total 3"]
    bad = [
        "",
        "# a free-form comment",
        "garbage here",
        'g{a="3",} 1',
        'g{a="4"} 1 ',
        "# TYPE g untyped",
        "# HELP g metadata after samples",
        'c_total{a="5"} 1 # {x="y"}',
        "c_total 1 " + "9" * 400,
    ]
    lines = [good[0], good[1], bad[0], bad[1], good[2], *bad[2:], *good[3:]]
    result = parse("\n".join(lines) + "\n# EOF\n", openmetrics=True)
    assert result.errors == len(bad)
    assert _ours(result.families) == _reference("\n".join(good) + "\n# EOF\n", openmetrics=True)


_exposition_chars = st.sampled_from(list('{}=",# \t\r\n\\_:.+-eE0123456789aInfNTYPEHLUcounter\u2028\xa0'))


@settings(max_examples=300, deadline=None)
@given(st.text(_exposition_chars, max_size=80) | st.text(max_size=80), st.booleans())
def test_never_raises(text: str, openmetrics: bool) -> None:
    result = parse(text, openmetrics=openmetrics)
    assert result.errors >= len(result.error_samples)


def test_openmetrics_eof_rules() -> None:
    missing = parse("g 1\n", openmetrics=True)
    assert missing.errors == 1 and missing.error_samples == [(2, "missing # EOF")]
    assert [s.value for f in missing.families for s in f.samples] == [1.0]

    after = parse("g 1\n# EOF\ng 2\n", openmetrics=True)
    assert after.errors == 1 and after.error_samples == [(3, "line after # EOF")]
    assert [s.value for f in after.families for s in f.samples] == [1.0]


def test_error_samples_are_capped() -> None:
    result = parse("\n".join(["bad line here"] * 15 + ["ok 1"]))
    assert result.errors == 15
    assert result.error_samples == [(n, result.error_samples[0][1]) for n in range(1, 11)]
    assert _shape("\n".join(["bad line here"] * 15 + ["ok 1"])) == [("ok", "untyped", ["ok"])]


# ---------------------------------------------------------------------------
# Label cache and content type


def test_label_cache_is_bounded_and_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser, "_LABEL_CACHE_MAX", 3)
    monkeypatch.setattr(parser, "_label_cache", parser._LabelCache())
    text = "".join(f'm{{i="{i % 5}",e="x\\\\{i % 5}"}} {i}\n' for i in range(20))
    for _ in range(2):
        samples = [s for f in parse(text).families for s in f.samples]
        assert [s.labels for s in samples] == [(("e", f"x\\{i % 5}"), ("i", str(i % 5))) for i in range(20)]
        assert len(parser._label_cache) <= 3


def test_label_cache_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct huge label values (a hostile target) cannot pin more than the byte cap."""
    monkeypatch.setattr(parser, "_label_cache", parser._LabelCache())
    for scrape in range(15):
        text = "".join(f'm{{v="{scrape}-{i}-' + "x" * (1 << 20) + f'"}} {i}\n' for i in range(4))
        assert sum(len(f.samples) for f in parse(text).families) == 4
        assert parser._label_cache.text_bytes <= parser._LABEL_CACHE_MAX_BYTES


def test_a_huge_bad_line_is_reported_as_a_short_excerpt() -> None:
    result = parse("bad-" + "y" * 5_000_000 + " 1\n")
    assert result.errors == 1
    assert len(result.error_samples[0][1]) <= 250


def test_braces_and_commas_inside_values_with_a_warm_cache() -> None:
    parse('m{a="x"} 1\n')
    text = 'm{a="x"} 1\nm{a="x}"} 2\nm{a="x\\"}",b="{,=}"} 3\n'
    assert [f.samples[0].labels for f in parse(text).families] == [
        (("a", "x"),),
        (("a", "x}"),),
        (("a", 'x"}'), ("b", "{,=}")),
    ]
    assert_matches_reference(text)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
        ("Application/OpenMetrics-Text", True),
        ("text/plain; version=0.0.4; charset=utf-8", False),
        ("", False),
        (None, False),
    ],
)
def test_is_openmetrics(content_type: str | None, expected: bool) -> None:
    assert is_openmetrics(content_type) is expected


def test_a_familys_times_line_up_with_its_samples_whichever_path_read_them() -> None:
    """A time of its own makes a family's time column; the untimed samples around it (read in C, where built)
    hold None there. A family with no such sample has no column at all."""
    untimed_first = '# TYPE b gauge\nb{x="3"} 1\nb{x="4"} 1\n'  # label texts the C runs then know
    text = untimed_first + '# TYPE a gauge\na{x="1"} 1\na{x="2"} 2 1000\na{x="3"} 3\na{x="4"} 4\n'
    untimed, timed = parse(text).families
    assert timed.timestamps == [None, 1.0, None, None]
    assert [(s.labels, s.value, s.timestamp) for s in timed.samples] == [
        ((("x", "1"),), 1.0, None),
        ((("x", "2"),), 2.0, 1.0),
        ((("x", "3"),), 3.0, None),
        ((("x", "4"),), 4.0, None),
    ]
    assert untimed.timestamps is None
