"""The optional C extension (bridge/_speedups.c) against the Python code it mirrors, on the same inputs.

The Python code is the reference: every test here runs both and asserts identical outputs. Where the
extension is not built (no compiler at install time) the C side is skipped, and says so.
"""

from __future__ import annotations

import math
import struct
from array import array
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import parser, speedups
from bridge.model import Batch, Kind, Metric, Point, Temporality
from bridge.sinks.datadog import encode
from bridge.sinks.otlp.encode import RequestEncoder
from bridge.sources import classify
from bridge.sources.classify import Classifier, Window
from tests.conftest import T0
from tests.test_parser import BAD_TEXT_LINES, _exposition_chars, text_exposition
from tests.test_series import CEREBRAS_RULES, FIXTURE_BODIES, _varied

NOT_BUILT = "bridge._speedups is not built here (no C compiler at install, or METRICS_BRIDGE_NO_SPEEDUPS): Python only"
native = pytest.mark.skipif(speedups.native is None, reason=NOT_BUILT)

#: Value texts float() and the parser read differently, or not at all, or only after stripping.
ODD_TOKENS = [
    "0",
    "-0",
    "1.5",
    "NaN",
    "nan",
    "+Inf",
    "-inf",
    "Infinity",
    "1e3",
    "1E-3",
    "1e999",
    "-1e-400",
    "1_0",
    "7 1700000000000",
    "",
    " 1",
    "1 ",
    "1\r",
    "1\x1c",
    "\t2",
    "-",
    "+",
    ".",
    "e5",
    "1e",
    "0x10",
    "1.2.3",
    "+-1",
    "00012",
    ".5",
    "5.",
    "9" * 80,
    "1" * 70 + ".5",
    "inf5",
    "nan(1)",
]


def _learn(text: str) -> classify._Learned | None:
    classifier = Classifier(rules=CEREBRAS_RULES, resource_labels=frozenset({"organization_id"}))
    classifier.ingest(text, Window(T0 * 10**9, (T0 + 60) * 10**9))
    return classifier._learned


def _learned(text: str) -> classify._Learned:
    learned = _learn(text)
    assert learned is not None, "the fixture is learned"
    return learned


#: The fixtures whose shape is learned (one with its own timestamps is always parsed).
LEARNABLE = [path for path in FIXTURE_BODIES if _learn(path.read_text()) is not None]


def _with_tokens(text: str, draw: st.DrawFn) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        head, space, _ = line.rpartition(" ")
        if space and not line.lstrip().startswith("#") and draw(st.booleans()):
            token = draw(st.sampled_from(ODD_TOKENS) | st.text(st.characters(codec="ascii"), max_size=12))
            lines[i] = head + space + token.replace("\n", "")
    return "\n".join(lines)


@native
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LEARNABLE), st.data())
def test_recognise_reads_every_body_as_the_python_code_does(path: Path, data: st.DataObject) -> None:
    text = path.read_text()
    learned = _learned(text)
    body = data.draw(st.sampled_from(["same", "varied", "tokens", "cut"]))
    if body == "varied":
        text = _varied(text, data.draw)
    elif body == "tokens":
        text = _with_tokens(text, data.draw)
    elif body == "cut":  # a line cut short anywhere: what is left may be the start of its head
        lines = text.split("\n")
        i = data.draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
        text = "\n".join(lines)
    expected = _recognised(text, learned)
    if body == "same":
        assert expected is not None


def _recognised(text: str, learned: classify._Learned) -> list[float] | None:
    """The Python reference's answer, after checking the C side gives the same one wherever it runs."""
    expected = classify._recognised_values(text, learned)
    if speedups.native is not None and text.isascii() and learned.text.isascii():
        got = speedups.native.recognise(text, learned.text, learned.starts, learned.lengths, learned.samples)
        assert repr(got) == repr(expected)  # repr: NaN equals NaN, -0.0 differs from 0.0
    return expected


#: Decimal texts of every shape, valid or not: what the C side reads with the C library's strtod.
_DECIMALS = (
    st.from_regex(r"[+-]?[0-9]{0,25}(\.[0-9]{0,25})?([eE][+-]?[0-9]{0,4})?", fullmatch=True)
    | st.floats().map(repr)
    | st.floats(allow_nan=False, allow_infinity=False).map(lambda v: f"{v:.17e}")
    | st.text("0123456789.eE+-", max_size=30)
)


@native
@settings(max_examples=1000, deadline=None)
@given(st.lists(_DECIMALS, min_size=1, max_size=5))
def test_decimals_are_read_as_float_reads_them(tokens: list[str]) -> None:
    """Rounding, overflow to inf, underflow to zero or a subnormal, signs, `5.` and `.5`; and the same refusals."""
    text = "\n".join(f"m {token}" for token in tokens)
    expected = classify._shape(text)
    assert speedups.native is not None
    got = speedups.native.learn(text)
    assert repr(None if got is None else got[3]) == repr(None if expected is None else expected[3])


#: Lines a body may hold besides its samples: blank, whitespace (str.lstrip's ASCII set), comments, no value.
ODD_LINES = [
    "",
    " ",
    "\t",
    "\x0b",
    "\x1c",
    "\x1f",
    "\r",
    "# c",
    "  # c",
    "#",
    "m 1",
    "m  1",
    "m 1 ",
    "m\t1",
    "m",
    "m x",
    "m 1_0",
]


def _parsed(text: str, native_on: bool) -> str:
    """The whole parse, NaN-safe (repr), with or without the C extension's sample runs."""
    saved = speedups.native
    speedups.native = saved if native_on else None  # type: ignore[assignment]
    try:
        return repr(parser.parse(text))
    finally:
        speedups.native = saved  # type: ignore[assignment]


@native
@settings(max_examples=300, deadline=None)
@given(
    text_exposition(),
    st.lists(st.tuples(st.integers(0, 50), st.sampled_from([*BAD_TEXT_LINES, *ODD_LINES])), max_size=5),
    st.integers(1, 3),
)
def test_sample_runs_parse_as_the_python_code_does(
    exposition: tuple[list[str], str], odd: list[tuple[int, str]], repeats: int
) -> None:
    """Bad, odd and repeated lines among valid ones (a repeat finds its name and label text known)."""
    lines, newline = exposition
    lines = lines * repeats
    for position, line in odd:
        lines.insert(position % (len(lines) + 1), line)
    text = newline.join(lines)
    assert _parsed(text, native_on=True) == _parsed(text, native_on=False)


@native
@settings(max_examples=300, deadline=None)
@given(st.text(_exposition_chars, max_size=120) | st.sampled_from(FIXTURE_BODIES).map(Path.read_text))
def test_sample_runs_read_any_text_as_the_python_code_does(text: str) -> None:
    text = text + "\n" + text  # the second time round, names and label texts are known
    assert _parsed(text, native_on=True) == _parsed(text, native_on=False)


@native
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIXTURE_BODIES), st.data())
def test_learn_finds_the_shape_the_python_code_finds(path: Path, data: st.DataObject) -> None:
    text = _with_tokens(path.read_text(), data.draw) if data.draw(st.booleans()) else path.read_text()
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(0, 3))):
        lines.insert(data.draw(st.integers(0, len(lines))), data.draw(st.sampled_from(ODD_LINES)))
    text = "\n".join(lines)
    expected = classify._shape(text)
    got = speedups.native.learn(text) if text.isascii() else None
    if got is None or expected is None:
        assert got is expected
        return
    starts, lengths, samples, values = got
    assert (array("I", starts), array("I", lengths), samples) == expected[:3]
    assert repr(values) == repr(expected[3])  # repr: NaN equals NaN, -0.0 differs from 0.0


#: A learned body: a counter family, a blank line, an unlabelled gauge, and the trailing newline.
TEMPLATE = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 1\na_total{x="22"} 2.5\n\nb 3\n'


@pytest.mark.parametrize(
    ("body", "values"),
    [
        (TEMPLATE, [1.0, 2.5, 3.0]),
        # values of other lengths: every later line sits elsewhere in the new text than in the learned one
        (TEMPLATE.replace("} 1\n", "} 1000.25\n").replace("b 3", "b 3e-07"), [1000.25, 2.5, 3e-07]),
        (TEMPLATE.replace("} 1\n", "} 1 \n"), [1.0, 2.5, 3.0]),  # float() strips what follows the value
        (TEMPLATE.replace("} 2.5\n", "} NaN\n"), [1.0, math.nan, 3.0]),
        (TEMPLATE.replace('x="1"', 'x="2"'), None),  # another head of the same length
        (TEMPLATE.replace('x="22"} 2.5', 'x="2"} 22.5'), None),  # the head's end moved into the value
        (TEMPLATE.replace('a_total{x="1"} ', 'a_total{x="1"}'), None),  # a head cut short
        (TEMPLATE.replace("} 1\n", "} 1_0\n"), None),  # float() reads it, the parser does not
        (TEMPLATE.replace("} 1\n", "} one\n"), None),
        (TEMPLATE.replace("} 1\n", "} \n"), None),  # no value
        (TEMPLATE.replace("b 3", "b 3 1700000000000"), None),  # a timestamp
        (TEMPLATE.replace("# HELP a_total A.", "# HELP a_total A. B."), None),  # a comment gained text
        (TEMPLATE.replace("# HELP a_total A.", "# HELP a_total A"), None),  # or lost some: its head's start
        (TEMPLATE.replace('a_total{x="22"} 2.5', 'a_total{x="22"'), None),  # a sample line cut inside its head
        (TEMPLATE.replace("b 3\n", "b"), None),  # the last line, cut inside its head
        (TEMPLATE.replace("\n\nb", "\n \nb"), None),  # so did the blank line
        (TEMPLATE.removesuffix("\n"), None),  # no trailing newline: one line fewer
        (TEMPLATE + "\n", None),  # one line more, blank
        (TEMPLATE + "c 4\n", None),
        (TEMPLATE.replace("b 3\n", ""), None),
        ("", None),
    ],
)
def test_a_body_is_recognised_only_line_for_line(body: str, values: list[float] | None) -> None:
    learned = _learned_plain(TEMPLATE)
    assert repr(_recognised(body, learned)) == repr(values)


def _learned_plain(text: str) -> classify._Learned:
    classifier = Classifier()
    classifier.ingest(text, Window(T0 * 10**9, (T0 + 60) * 10**9))
    assert classifier._learned is not None
    return classifier._learned


def test_the_template_is_the_body_itself_and_two_numbers_a_line() -> None:
    """No copy of the body and no object per line: the heads are read out of the learned text."""
    text = LEARNABLE[0].read_text()
    learned = _learned(text)
    assert learned.text is text
    assert (learned.starts.typecode, learned.lengths.typecode, type(learned.samples)) == ("I", "I", bytes)
    heads = [text[start : start + length] for start, length in zip(learned.starts, learned.lengths, strict=True)]
    lines = text.split("\n")
    assert all(map(str.startswith, lines, heads)) and len(heads) == len(lines) == len(learned.samples)


def test_without_a_trailing_newline_the_last_line_is_recognised_too() -> None:
    learned = _learned_plain(TEMPLATE.removesuffix("\n"))
    assert _recognised(TEMPLATE.removesuffix("\n").replace("b 3", "b 44"), learned) == [1.0, 2.5, 44.0]
    assert _recognised(TEMPLATE, learned) is None


def test_a_learned_body_that_is_not_ascii_is_recognised_by_the_python_code() -> None:
    """A value in digits float() reads but that are not ASCII: the next, ASCII, body is read in Python."""
    learned = _learned_plain("m \uff11\nn 2\n")
    assert _recognised("m 3\nn 4\n", learned) == [3.0, 4.0]
    assert _recognised("m 3\nn\u00a04\n", learned) is None


@native
def test_recognise_refuses_a_text_that_is_not_ascii() -> None:
    assert speedups.native is not None
    one = array("I", [0])
    with pytest.raises(ValueError, match="ASCII"):
        speedups.native.recognise("a 1\n\u00e9", "a 1", one, array("I", [2]), b"\x01")
    with pytest.raises(ValueError, match="ASCII"):
        speedups.native.recognise("a 1", "\u00e9 1", one, array("I", [2]), b"\x01")


@native
def test_recognise_refuses_a_template_that_does_not_fit_its_text() -> None:
    """Heads outside the learned text, or offsets that are not one 32-bit number a line, raise: nothing is read."""
    assert speedups.native is not None
    with pytest.raises(ValueError, match="outside"):
        speedups.native.recognise("a 1", "a 1", array("I", [2]), array("I", [2]), b"\x01")
    with pytest.raises(ValueError, match="lengths"):
        speedups.native.recognise("a 1", "a 1", array("I", [0]), array("I", [2, 0]), b"\x01")
    with pytest.raises(ValueError, match="starts"):
        speedups.native.recognise("a 1", "a 1", array("Q", [0]), array("I", [2]), b"\x01")  # type: ignore[arg-type]


def test_the_classifier_takes_the_python_path_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """What runs where the extension is not built: the same recognition, by the Python code."""
    text = LEARNABLE[0].read_text()
    learned = _learned(text)
    monkeypatch.setattr(speedups, "native", None)
    classifier = Classifier(rules=CEREBRAS_RULES, resource_labels=frozenset({"organization_id"}))
    classifier._learned = learned
    recognised = classifier._recognise(text, learned)
    assert recognised is not None and recognised[1] == len(classify._recognised_values(text, learned) or [])


# -- Datadog framing ---------------------------------------------------------------------------------------------
_heads = st.lists(
    st.builds(
        encode.series_head,
        st.text("abcdefgh_.", min_size=1, max_size=30).map(encode.metric_name),
        st.sampled_from([encode.COUNT, encode.GAUGE]),
        st.sampled_from(["", "second", "byte"]),
        st.lists(st.text(st.characters(codec="ascii"), max_size=20).map(lambda t: encode.sanitize_tag(t) or "x")),
        st.none() | st.just("host-1"),
    ),
    min_size=1,
    max_size=8,
)
_values = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1e16, 1e-7, 0.1, 5e-324, 1.7976931348623157e308, 123456789.0]
)


@st.composite
def _samples(draw: st.DrawFn) -> list[tuple[str, int, float, int | None]]:
    heads = draw(_heads)
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(heads),
                st.integers(0, 2**62) | st.just(1_800_000_000),
                _values,
                st.none() | st.integers(1, 10**6),
            ),
            min_size=0,
            max_size=60,
        )
    )


@native
@settings(max_examples=300, deadline=None)
@given(_samples(), st.integers(100, 3000), st.integers(50, 1000), st.sampled_from(["none", "gzip", "zstd"]))
def test_datadog_bodies_are_byte_for_byte_the_python_ones(
    samples: list[tuple[str, int, float, int | None]], uncompressed: int, compressed: int, codec: str
) -> None:
    """Same runs, same halvings, same oversized count, same bytes; limits small enough to cut and halve."""
    limits = encode.Limits(max_compressed=compressed, max_uncompressed=uncompressed)
    got = encode.pack_samples(samples, codec, None, limits, native=True)
    expected = encode.pack_samples(samples, codec, None, limits, native=False)
    assert got == expected
    assert expected == encode.pack_series(encode.series_fragments(samples), codec, None, limits)


@native
@settings(max_examples=200, deadline=None)
@given(_samples().filter(bool))
def test_a_framed_run_is_the_python_frame(samples: list[tuple[str, int, float, int | None]]) -> None:
    assert speedups.native is not None
    raw, count = speedups.native.frame_series(samples, 0, len(samples), 2**62)
    assert count == len(samples)
    assert raw == encode._frame(list(encode.series_fragments(samples)))


@native
def test_framing_other_objects_writes_what_the_f_string_writes() -> None:
    """An int value, a huge timestamp, a float subclass: str()/repr() as the Python code uses them."""

    class Odd(float):
        def __repr__(self) -> str:
            return "7.5"

    head = encode.series_head("m", encode.GAUGE, "", (), None)
    samples = [(head, 2**70, 3, None), (head, 5, Odd(1.0), 60), (head, -1, math.nan, None)]
    assert speedups.native is not None
    raw, _ = speedups.native.frame_series(samples, 0, 3, 2**62)  # type: ignore[arg-type]
    assert raw == encode._frame(list(encode.series_fragments(samples)))  # type: ignore[arg-type]


@native
def test_a_head_that_is_not_ascii_falls_back_to_the_python_path() -> None:
    samples = [
        (('{"metric":"caf\u00e9",', ""), 1, 1.0, None),
        (('{"metric":"m",', '"tags":["caf\u00e9"],'), 1, 1.0, None),
    ]
    for sample in samples:  # either piece of a head
        assert speedups.native is not None
        with pytest.raises(ValueError, match="ASCII"):
            speedups.native.frame_series([sample], 0, 1, 2**62)
    limits = encode.Limits()
    assert encode.pack_samples(samples, "none", None, limits) == encode.pack_samples(
        samples, "none", None, limits, native=False
    )


def _short_decimals() -> st.SearchStrategy[float]:
    """Values as exporters write them: a few digits either side of the point, near the fast path's edges too."""
    digits = st.integers(0, 10**17).map(str)
    decimal = st.builds(
        lambda whole, point, sign: float(f"{sign}{whole[:point]}.{whole[point:] or 0}"),
        digits,
        st.integers(0, 18),
        st.sampled_from(["", "-"]),
    )
    edges = st.sampled_from(
        [
            1e-4,
            1e15,
            2.0**49,
            2.0**53,
            0.1 + 0.2,
            1 / 3,
            2 / 3,
            5e-5,
            9.999999999999999e14,
            0.30000000000000004,
            123456789.12345679,
            0.0001000000000000001,
            1e-4 * (1 - 2**-52),
        ]
    )
    nudged = (decimal | edges).flatmap(
        lambda v: st.sampled_from([v, math.nextafter(v, math.inf), math.nextafter(v, -math.inf)])
    )
    return decimal | edges | nudged | st.floats(1e-5, 1e16) | st.floats()


@native
@settings(max_examples=3000, deadline=None)
@given(st.lists(_short_decimals(), min_size=1, max_size=20))
def test_values_are_written_as_repr_writes_them(values: list[float]) -> None:
    """The C side writes short decimals without dtoa's search: each must still be exactly repr(value)."""
    head = encode.series_head("m", encode.GAUGE, "", (), None)
    samples = [(head, 1, value, None) for value in values]
    assert speedups.native is not None
    raw, _ = speedups.native.frame_series(samples, 0, len(samples), 2**62)
    assert raw == encode._frame(list(encode.series_fragments(samples)))


# -- OTLP number points ------------------------------------------------------------------------------------------
_labels = st.lists(st.tuples(st.sampled_from(["endpoint", "model", "statistic", ""]), st.text(max_size=8)), max_size=3)
_times = st.integers(0, 2**64 - 1) | st.just(1_800_000_000 * 10**9) | st.integers(-5, -1) | st.just(2**64)


@native
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_labels, _values | st.integers(-3, 3), _times, _times), max_size=12),
    st.sampled_from([Kind.GAUGE, Kind.COUNTER]),
    st.booleans(),
)
def test_otlp_points_are_the_python_bytes(
    rows: list[tuple[list[tuple[str, str]], float, int, int]], kind: Kind, warm: bool
) -> None:
    """Same bytes (or the same error) with the extension and without, cold (heads not framed yet) or warm."""
    points = [Point(tuple(sorted(set(labels))), value, start, end) for labels, value, start, end in rows]

    def encoded(native_on: bool) -> bytes | str:
        encoder = RequestEncoder({"service.name": "s"}, scope_version="1")
        metric = Metric("m", kind, points, Temporality.CUMULATIVE)
        saved = speedups.native
        try:
            speedups.native = None
            if warm:
                try:  # frames the heads (the Python code)
                    encoder.encode(Batch("src", (), 0, 1, [metric]))
                except struct.error as exc:
                    return f"struct.error: {exc}"
            speedups.native = saved if native_on else None
            return encoder.encode(Batch("src", (), 0, 1, [metric]))
        except struct.error as exc:
            return f"struct.error: {exc}"
        finally:
            speedups.native = saved

    assert encoded(True) == encoded(False)


@native
def test_warm_plain_points_are_written_in_c() -> None:
    """The case the extension is for: every head framed, every value a float; the C side answers it."""
    points = [Point((("endpoint", f"e{i}"),), i / 7, 10, 20 + i) for i in range(50)]
    encoder = RequestEncoder({"service.name": "s"}, scope_version="1")
    metric = Metric("m", Kind.GAUGE, points)
    saved = speedups.native
    assert saved is not None
    try:
        speedups.native = None
        python = encoder._number_points(metric)  # frames the heads
    finally:
        speedups.native = saved
    written = saved.number_points(metric.series, metric.values, metric.starts, metric.ends, encoder._number_slot)  # type: ignore[arg-type]
    assert written is not None and written == python


# -- the series memo --------------------------------------------------------------------------------------------
_MEMO_OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "get", "get_default", "item", "pop", "pop_default", "delete"]),
        st.sampled_from([0, 1, 2, 7, 300, 2**40]),  # slots, small and past the cached ints
        st.integers(),
    ),
    max_size=40,
)


def _apply(memo: object, op: str, slot: int, value: int) -> object:
    """One operation on a memo (the Memo or the dict it stands in for); what it returned or raised."""
    try:
        if op == "set":
            memo[slot] = value  # type: ignore[index]
            return None
        if op == "get":
            return memo.get(slot)  # type: ignore[attr-defined]
        if op == "get_default":
            return memo.get(slot, "default")  # type: ignore[attr-defined]
        if op == "item":
            return memo[slot]  # type: ignore[index]
        if op == "pop":
            return memo.pop(slot)  # type: ignore[attr-defined]
        if op == "pop_default":
            return memo.pop(slot, "default")  # type: ignore[attr-defined]
        del memo[slot]  # type: ignore[attr-defined]
        return None
    except KeyError as exc:
        return ("KeyError", exc.args)


@native
@settings(max_examples=300, deadline=None)
@given(_MEMO_OPS)
def test_a_memo_behaves_as_the_dict_it_replaces(ops: list[tuple[str, int, int]]) -> None:
    assert speedups.native is not None
    memo, reference = speedups.native.Memo(), {}
    for op, slot, value in ops:
        # an equal slot that is another int object than the one stored still finds it
        probe = int(str(slot))
        assert _apply(memo, op, probe, value) == _apply(reference, op, slot, value), (op, slot)
        assert len(memo) == len(reference)
        assert sorted(memo.values()) == sorted(reference.values())


@native
def test_a_memo_holds_its_values_and_lets_go_of_them() -> None:
    import gc
    import sys
    import weakref

    assert speedups.native is not None

    class Held:
        memo: object = None

    held = Held()
    count = sys.getrefcount(held)
    memo = speedups.native.Memo()
    memo[1] = held
    memo[1] = held  # replacing a value releases the old reference
    assert sys.getrefcount(held) == count + 1
    popped = memo.pop(1)
    assert popped is held
    del popped
    assert sys.getrefcount(held) == count
    # a cycle through a memo (a series whose memo holds its rewritten twin, which points back) is collected
    held.memo = speedups.native.Memo()
    held.memo[5] = held
    gone = weakref.ref(held)
    del held
    gc.collect()
    assert gone() is None
    with pytest.raises(TypeError):
        speedups.native.Memo(1)  # type: ignore[call-arg]


# -- Series and intern_keys ------------------------------------------------------------------------------------------


def _fields(series: object) -> tuple[object, ...]:
    """What a series holds, comparable across the two classes (its memo by length, its family by keys)."""
    s = cast(Any, series)
    return (s.family, s.key, s.attributes, s.lifted, s.seen_ns, s.last, len(s.memo), list(s.members), repr(s))


@native
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("f", (("a", "1"),), (("a", "1"),)), {}),
        (("f", "key", (("statistic", "p50"),), (("org", "o"),)), {}),
        (("f", ("unlifted", "org", "k"), ()), {"lifted": (), "members": {"x": 1}}),
        ((), {"family": "f", "key": "k", "attributes": ()}),
    ],
)
def test_a_c_series_is_made_as_the_python_one(args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
    from bridge.series.table import PythonSeries, Series

    assert speedups.native is not None and Series is speedups.native.Series
    made, reference = Series(*args, **kwargs), PythonSeries(*args, **kwargs)
    assert _fields(made) == _fields(reference)
    assert type(made.memo) is speedups.native.Memo
    if "members" not in kwargs:  # a family table of its own, not shared with any other series
        assert made.members == {} and made.members is not Series(*args, **kwargs).members
    made.seen_ns, made.last, made.attributes = 5, "state", (("b", "2"),)
    assert (made.seen_ns, made.last, made.attributes) == (5, "state", (("b", "2"),))
    for series in (made, reference):
        with pytest.raises(AttributeError):
            series.other = 1  # type: ignore[attr-defined]  # no __dict__: slots only, as the Python class
    with pytest.raises(TypeError):
        Series("f")  # type: ignore[call-arg]


@native
@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=6), max_size=4))
def test_interning_a_family_in_c_finds_and_adds_what_the_python_code_does(batches: list[list[str]]) -> None:
    from bridge.series.table import SeriesTable

    c_table, python_table = SeriesTable("c"), SeriesTable("python")
    seen: set[str] = set()
    for labels in batches:
        seen.update(labels)
        keys = [(("k", label),) for label in labels]
        made = c_table.intern_all("f", keys)
        saved = speedups.native
        speedups.native = None  # type: ignore[assignment]
        try:
            expected = python_table.intern_all("f", keys)
        finally:
            speedups.native = saved  # type: ignore[assignment]
        assert [_fields(s) for s in made] == [_fields(s) for s in expected]
        assert [c_table.get("f", k) for k in keys] == made  # the same entries, found again
        assert len(c_table) == len(python_table) == len(seen)


@native
def test_interned_series_and_their_family_are_let_go() -> None:
    import gc
    import sys
    import weakref

    from bridge.series.table import SeriesTable

    key = (("k", "v"),)
    count = sys.getrefcount(key)
    table = SeriesTable("t")
    [series] = table.intern_all("f", [key])
    assert table.get("f", key) is series and series.members[key] is series  # a cycle: family <-> series

    class State:  # what a consumer keeps on the series; gone when the series is
        pass

    series.last = State()
    gone = weakref.ref(series.last)
    del series
    table.clear()
    gc.collect()
    assert gone() is None
    assert sys.getrefcount(key) == count


_LABEL_SETS = [(), (("endpoint", "a"),), (("endpoint", "b"), ("statistic", "p99")), (("model", "\u00e9"),)]


@native
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_LABEL_SETS), st.booleans(), st.booleans()), max_size=30),
    st.booleans(),
)
def test_datadog_heads_are_made_and_kept_as_the_python_code_makes_them(
    rows: list[tuple[tuple[tuple[str, str], ...], bool, bool]], keep: bool
) -> None:
    """Rows: (attributes, a head already in the memo, a Python series with a dict memo)."""
    from bridge.series.table import PythonSeries, Series
    from bridge.sinks.datadog.normalize import python_own_heads

    slot = 7 if keep else None

    def entries() -> list[Any]:
        made = []
        for index, (attributes, has_head, python) in enumerate(rows):
            entry = (PythonSeries if python else Series)("f", index, attributes)
            if has_head:
                entry.memo[7] = ("kept-prefix", f"kept-{index}")
            made.append(entry)
        return made

    def run(own_heads: Any) -> tuple[list[Any], list[Any], dict[Any, Any], dict[str, str], list[Any]]:
        calls: list[Any] = []

        def make_tail(attributes: Any) -> tuple[str, tuple[str, ...], str]:
            calls.append(attributes)
            suffix = dict(attributes).get("statistic", "")
            return suffix, tuple(f"{k}:{v}" for k, v in attributes), f"tail{attributes}"

        def make_prefix(suffix: str) -> str:
            calls.append(suffix)
            return f"prefix{suffix}"

        made, tails, prefixes = entries(), {(): ("", (), "known tail")}, {}
        heads = own_heads(made, slot, tails, make_tail, prefixes, make_prefix)
        return heads, [entry.memo.get(7) for entry in made], tails, prefixes, calls

    assert speedups.native is not None
    assert run(speedups.native.own_heads) == run(python_own_heads)


@native
def test_own_heads_passes_a_maker_s_error_on_and_refuses_a_wrong_tagging() -> None:
    from bridge.series.table import Series

    assert speedups.native is not None
    entries = [Series("f", index, (("k", str(index)),)) for index in range(3)]

    def broken(attributes: Any) -> Any:
        raise LookupError(attributes)

    with pytest.raises(LookupError):
        speedups.native.own_heads(entries, 7, {}, broken, {}, str)
    with pytest.raises(TypeError, match="make_tail must return"):
        speedups.native.own_heads(entries, 7, {}, lambda attributes: ("", ()), {}, str)
    assert [entry.memo.get(7) for entry in entries] == [None, None, None]  # nothing half-kept


@native
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_LABEL_SETS), st.booleans(), st.booleans()), max_size=30))
def test_memo_fill_keeps_what_the_python_code_keeps(rows: list[tuple[tuple[tuple[str, str], ...], bool, bool]]) -> None:
    """Rows: (attributes, a value already in the memo, a Python series with a dict memo)."""
    from bridge.series.table import PythonSeries, Series, python_memo_fill

    def run(memo_fill: Any) -> tuple[bool, list[Any], dict[Any, Any], list[Any]]:
        calls: list[Any] = []

        def make(attributes: Any) -> str:
            calls.append(attributes)
            return f"made{attributes}"

        entries = []
        for index, (attributes, kept, python) in enumerate(rows):
            entry = (PythonSeries if python else Series)("f", index, attributes)
            if kept:
                entry.memo[5] = f"kept-{index}"
            entries.append(entry)
        cache = {(): "cached"}
        filled = memo_fill(entries, 5, cache, make)
        return filled, [entry.memo.get(5) for entry in entries], cache, calls

    assert speedups.native is not None
    assert run(speedups.native.memo_fill) == run(python_memo_fill)


@native
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**63 - 1), st.booleans()), max_size=30), st.integers(0, 2**63 - 1))
def test_mark_seen_sets_what_the_python_code_sets(rows: list[tuple[int, bool]], end: int) -> None:
    """Rows: (the entry's seen_ns before, a Python series rather than a C one)."""
    from bridge.series.table import PythonSeries, Series, python_mark_seen

    def run(mark_seen: Any) -> list[tuple[type, int]]:
        entries = []
        for index, (seen, python) in enumerate(rows):
            entry = (PythonSeries if python else Series)("f", index, ())
            entry.seen_ns = seen
            entries.append(entry)
        mark_seen(entries, end)
        return [(type(entry), entry.seen_ns) for entry in entries]

    assert speedups.native is not None
    assert run(speedups.native.mark_seen) == run(python_mark_seen)


@native
def test_mark_seen_passes_an_entrys_own_error_on() -> None:
    class Frozen:
        def __setattr__(self, name: str, value: object) -> None:
            raise AttributeError(f"{name} is read-only")

    assert speedups.native is not None
    with pytest.raises(AttributeError, match="seen_ns is read-only"):
        speedups.native.mark_seen([Frozen()], 1)  # type: ignore[list-item]
