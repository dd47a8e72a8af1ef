/* Optional C versions of five per-line or per-sample loops and of the per-series memo; bridge/speedups.py holds the
 * pure-Python reference.
 *
 * recognise(text, learned, starts, lengths, samples): the values of a scrape that is the remembered body
 *   `learned` line for line, each line compared in place with its head there (bridge/sources/classify.py,
 *   Classifier._recognise and _recognised_values), or None when it is not.
 * sample_run(lines, index, names, cache, allowed, samples, Sample): a run of usual 0.0.4 sample lines, as
 *   bridge/parser.py's _parse_text reads them; it stops at any other line, which the parser then takes.
 * learn(text): a parsed body's template, what recognise compares with (classify._shape), in one pass.
 * frame_series(samples, start, stop, limit): the Datadog body framing samples[start:stop] as far as it
 *   stays within `limit` bytes (bridge/sinks/datadog/encode.py, series_fragment and _chunks_by_size).
 * number_points(series, values, starts, ends, slot): a Gauge's or Sum's OTLP data points as wire bytes from
 *   each series' framed attributes (bridge/sinks/otlp/encode.py, RequestEncoder._number_points).
 * Memo: a series' memo (bridge/series/table.py), the dict methods its consumers use in a quarter of the memory.
 * Series and intern_keys(members, family, keys): the series table's entry, and a family's entries looked up
 *   or made in one loop (bridge/series/table.py, Series and SeriesTable.intern_all).
 *
 * Each gives exactly what the Python code gives (tests/test_speedups.py runs the two on the same inputs):
 * a decimal is read by the C library's strtod, correctly rounded as float() reads it (CPython's routine sets
 * the x87 control word twice a call: recognising 100k lines took 20 ms with it, 9 ms with strtod), anything
 * else by float() itself;
 * a float is written by the routine repr() uses.
 * Built by setuptools as an optional extension (setup.py): without a compiler, the Python code runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* -- recognise ------------------------------------------------------------------------------------------- */

/* float(token) for an ASCII token without '_'; NULL with ValueError set when float() would raise it. */
static PyObject *
read_float(PyObject *text, const char *data, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t n = end - start;
    char buf[64];
    int plain = n > 0 && n < (Py_ssize_t)sizeof(buf);
    for (Py_ssize_t i = 0; plain && i < n; i++) {
        char c = data[start + i];
        plain = (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
    }
    if (plain) { /* a decimal: the C library's correctly rounded strtod, as float() reads it */
        memcpy(buf, data + start, n);
        buf[n] = '\0';
        char *stop = NULL;
        double value = strtod(buf, &stop);
        if (stop == buf + n) /* else not all of it a number, or another LC_NUMERIC: float() says */
            return PyFloat_FromDouble(value);
    }
    PyObject *token = PyUnicode_Substring(text, start, end); /* anything else: float() itself */
    if (token == NULL)
        return NULL;
    PyObject *value = PyFloat_FromString(token);
    Py_DECREF(token);
    return value;
}

/* A buffer of `lines` C unsigned ints (an array.array("I")); -1 with an exception set otherwise. */
static int
get_offsets(PyObject *obj, Py_buffer *view, Py_ssize_t lines, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    Py_ssize_t size = (Py_ssize_t)sizeof(unsigned int);
    if (view->itemsize != size || view->format == NULL || strcmp(view->format, "I") != 0 || view->len != lines * size) {
        PyErr_Format(PyExc_ValueError, "recognise: %s is not an array('I') of one number per line", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *
recognise(PyObject *module, PyObject *args)
{
    PyObject *text, *learned, *starts_obj, *lengths_obj, *samples;
    if (!PyArg_ParseTuple(args, "UUOOO!:recognise", &text, &learned, &starts_obj, &lengths_obj, &PyBytes_Type,
                          &samples))
        return NULL;
    if (!PyUnicode_IS_ASCII(text) || !PyUnicode_IS_ASCII(learned)) {
        PyErr_SetString(PyExc_ValueError, "recognise: a text is not ASCII");
        return NULL;
    }
    Py_ssize_t lines = PyBytes_GET_SIZE(samples);
    Py_buffer starts_view, lengths_view;
    if (get_offsets(starts_obj, &starts_view, lines, "starts") < 0)
        return NULL;
    if (get_offsets(lengths_obj, &lengths_view, lines, "lengths") < 0) {
        PyBuffer_Release(&starts_view);
        return NULL;
    }
    const unsigned int *starts = starts_view.buf, *lengths = lengths_view.buf;
    const char *is_sample = PyBytes_AS_STRING(samples);
    const char *data = (const char *)PyUnicode_DATA(text), *old = (const char *)PyUnicode_DATA(learned);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), old_size = PyUnicode_GET_LENGTH(learned);
    PyObject *values = PyList_New(0);
    if (values == NULL)
        goto release;
    Py_ssize_t pos = 0;
    for (Py_ssize_t i = 0; i < lines; i++) {
        Py_ssize_t head = starts[i], length = lengths[i];
        if (head > old_size || length > old_size - head) {
            PyErr_SetString(PyExc_ValueError, "recognise: a head lies outside the learned text");
            goto fail;
        }
        if (pos > size || length > size - pos || memcmp(data + pos, old + head, length) != 0)
            goto differs; /* the line does not start with its head */
        Py_ssize_t start = pos + length;
        const char *newline = memchr(data + start, '\n', size - start);
        Py_ssize_t end = newline != NULL ? newline - data : size;
        if (!is_sample[i]) {
            if (end != start) /* a comment or blank line: the same text, then the end of the line */
                goto differs;
        }
        else {
            if (memchr(data + start, '_', end - start) != NULL) /* float() takes `1_000`, the parser does not */
                goto differs;
            PyObject *value = read_float(text, data, start, end);
            if (value == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_ValueError))
                    goto fail;
                PyErr_Clear(); /* not a number: the parser will say what it is */
                goto differs;
            }
            int failed = PyList_Append(values, value);
            Py_DECREF(value);
            if (failed)
                goto fail;
        }
        pos = end + 1;
    }
    if (pos != size + 1) /* more lines than remembered */
        goto differs;
    goto release;
differs:
    Py_DECREF(values);
    values = Py_NewRef(Py_None);
    goto release;
fail:
    Py_CLEAR(values);
release:
    PyBuffer_Release(&starts_view);
    PyBuffer_Release(&lengths_view);
    return values;
}

/* What str.strip() and str.split() take for whitespace in from an ASCII text. */
static int
is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

/* -- sample_run ------------------------------------------------------------------------------------------ */

/* `text[start:end]` of an ASCII str as a new str. */
static PyObject *
ascii_slice(const char *data, Py_ssize_t start, Py_ssize_t end)
{
    return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, data + start, end - start);
}

/* A dict's value for text[start:end]; borrowed, NULL without an error when absent. */
static PyObject *
lookup_slice(PyObject *dict, const char *data, Py_ssize_t start, Py_ssize_t end)
{
    PyObject *key = ascii_slice(data, start, end);
    if (key == NULL)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(dict, key);
    Py_DECREF(key);
    return found;
}

/* One usual 0.0.4 sample line (a name and a label text the parse has met, one value) appended to the family's
 * columns: 1 when it was, 0 for any other line (which the Python code then takes), -1 on an error. */
static int
usual_sample(PyObject *line, PyObject *names, PyObject *cache, PyObject *allowed, PyObject *columns[3])
{
    const char *data = (const char *)PyUnicode_DATA(line);
    Py_ssize_t first = 0, last = PyUnicode_GET_LENGTH(line);
    while (first < last && is_space(data[first]))
        first++;
    while (last > first && is_space(data[last - 1]))
        last--;
    const char *brace = memchr(data + first, '{', last - first);
    Py_ssize_t name_end, rest;
    PyObject *labels;
    if (brace == NULL) { /* `name value`: the name is the first token */
        name_end = first;
        while (name_end < last && !is_space(data[name_end]))
            name_end++;
        labels = PyTuple_New(0); /* the empty tuple, a singleton */
        if (labels == NULL)
            return -1;
        rest = name_end;
    }
    else {
        name_end = brace - data;
        const char *close = memchr(brace, '}', data + last - brace);
        if (close == NULL)
            return 0;
        labels = lookup_slice(cache, data, name_end + 1, close - data);
        if (labels == NULL)
            return PyErr_Occurred() ? -1 : 0;
        Py_INCREF(labels);
        rest = close - data + 1;
    }
    int added = 0;
    PyObject *name = lookup_slice(names, data, first, name_end);
    if (name == NULL) {
        added = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    Py_ssize_t start = rest, end;
    while (start < last && is_space(data[start]))
        start++;
    for (end = start; end < last && !is_space(data[end]);)
        end++;
    if (start == end || end != last || memchr(data + start, '_', end - start) != NULL)
        goto done; /* no value, a timestamp too, or `1_000`: the Python code says what it is */
    added = PySequence_Contains(allowed, name);
    if (added != 1) /* 0: another family's sample, which the Python code starts */
        goto done;
    PyObject *value = read_float(line, data, start, end);
    if (value == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            added = 0;
        }
        else
            added = -1;
        goto done;
    }
    /* a failed append (no memory) raises out of the whole parse: columns left uneven are never read */
    if (PyList_Append(columns[0], name) || PyList_Append(columns[1], labels) || PyList_Append(columns[2], value))
        added = -1;
    Py_DECREF(value);
done:
    Py_DECREF(labels);
    return added;
}

static PyObject *
sample_run(PyObject *module, PyObject *args)
{
    PyObject *lines, *names, *cache, *allowed, *columns[3];
    Py_ssize_t index;
    if (!PyArg_ParseTuple(args, "O!nO!O!O!O!O!O!:sample_run", &PyList_Type, &lines, &index, &PyDict_Type, &names,
                          &PyDict_Type, &cache, &PyTuple_Type, &allowed, &PyList_Type, &columns[0], &PyList_Type,
                          &columns[1], &PyList_Type, &columns[2]))
        return NULL;
    for (; index >= 0 && index < PyList_GET_SIZE(lines); index++) {
        PyObject *line = PyList_GET_ITEM(lines, index);
        if (!PyUnicode_CheckExact(line) || !PyUnicode_IS_ASCII(line))
            break;
        const char *data = (const char *)PyUnicode_DATA(line);
        Py_ssize_t size = PyUnicode_GET_LENGTH(line), first = 0;
        while (first < size && is_space(data[first]))
            first++;
        if (first == size) /* a blank line */
            continue;
        if (data[first] == '#')
            break;
        int added = usual_sample(line, names, cache, allowed, columns);
        if (added < 0)
            return NULL;
        if (added == 0)
            break;
    }
    return PyLong_FromSsize_t(index);
}

/* -- learn ----------------------------------------------------------------------------------------------- */

static PyObject *
learn(PyObject *module, PyObject *args)
{
    PyObject *text;
    if (!PyArg_ParseTuple(args, "U:learn", &text))
        return NULL;
    if (!PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "learn: the text is not ASCII");
        return NULL;
    }
    const char *data = (const char *)PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), lines = 1;
    if (size > (Py_ssize_t)UINT_MAX) /* offsets are 32-bit */
        Py_RETURN_NONE;
    for (const char *at = data; (at = memchr(at, '\n', data + size - at)) != NULL; at++)
        lines++;
    PyObject *starts = PyBytes_FromStringAndSize(NULL, lines * (Py_ssize_t)sizeof(unsigned int));
    PyObject *lengths = PyBytes_FromStringAndSize(NULL, lines * (Py_ssize_t)sizeof(unsigned int));
    PyObject *samples = PyBytes_FromStringAndSize(NULL, lines);
    PyObject *values = PyList_New(0);
    if (starts == NULL || lengths == NULL || samples == NULL || values == NULL)
        goto fail;
    unsigned int *start_at = (unsigned int *)PyBytes_AS_STRING(starts);
    unsigned int *length_at = (unsigned int *)PyBytes_AS_STRING(lengths);
    char *is_sample = PyBytes_AS_STRING(samples);
    Py_ssize_t pos = 0;
    for (Py_ssize_t i = 0; i < lines; i++) {
        const char *newline = memchr(data + pos, '\n', size - pos);
        Py_ssize_t end = newline != NULL ? newline - data : size, first = pos;
        while (first < end && is_space(data[first]))
            first++;
        start_at[i] = (unsigned int)pos;
        is_sample[i] = first < end && data[first] != '#';
        if (!is_sample[i]) /* a comment or blank line: remembered whole */
            length_at[i] = (unsigned int)(end - pos);
        else {
            Py_ssize_t space = end - 1; /* a head ends with the line's last space */
            while (space >= pos && data[space] != ' ')
                space--;
            if (space < pos || memchr(data + space + 1, '_', end - space - 1) != NULL)
                goto unlearnable; /* no value to find; or `1_000`, which float() takes and the parser does not */
            length_at[i] = (unsigned int)(space + 1 - pos);
            PyObject *value = read_float(text, data, space + 1, end);
            if (value == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_ValueError))
                    goto fail;
                PyErr_Clear();
                goto unlearnable;
            }
            int failed = PyList_Append(values, value);
            Py_DECREF(value);
            if (failed)
                goto fail;
        }
        pos = end + 1;
    }
    PyObject *shape = PyTuple_Pack(4, starts, lengths, samples, values);
    Py_DECREF(starts);
    Py_DECREF(lengths);
    Py_DECREF(samples);
    Py_DECREF(values);
    return shape;
unlearnable:
    Py_DECREF(starts);
    Py_DECREF(lengths);
    Py_DECREF(samples);
    Py_DECREF(values);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(starts);
    Py_XDECREF(lengths);
    Py_XDECREF(samples);
    Py_XDECREF(values);
    return NULL;
}

/* -- frame_series ---------------------------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Buffer;

static int
reserve(Buffer *b, Py_ssize_t extra)
{
    if (b->size + extra <= b->capacity)
        return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 1 << 16;
    while (capacity < b->size + extra)
        capacity *= 2;
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int
put(Buffer *b, const char *text, Py_ssize_t n)
{
    if (reserve(b, n))
        return -1;
    memcpy(b->data + b->size, text, n);
    b->size += n;
    return 0;
}

/* The decimal digits of n, at least `width` of them (zero-padded), at out; returns how many. */
static int
write_digits(unsigned long long n, int width, char *out)
{
    char reversed[24];
    int count = 0;
    do {
        reversed[count++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (count < width)
        reversed[count++] = '0';
    for (int i = 0; i < count; i++)
        out[i] = reversed[count - 1 - i];
    return count;
}

static const double POWERS[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* repr(v) for the common short decimal (0.123, 42.5, 1000.0) without dtoa's search for the shortest digits.
 *
 * For k = 0, 1, 2, ...: p, the integer nearest v * 10**k, and whether p / 10**k reads back as v (one correctly
 * rounded division of two exact doubles: what strtod gives for the decimal text of p * 10**-k). While
 * v * 10**k < 2**49 its rounding error is below 1/16, and a decimal that reads back lies within 1/8 of it,
 * so p is the only k-decimal candidate: the first k where it reads back gives the shortest digits, which are
 * repr's. Written as repr writes numbers between 1e-4 and 1e15 (fixed point, at least one decimal). Returns
 * the length written, or 0 to leave it to PyOS_double_to_string (outside that range, or any doubt). */
static int
short_repr(double v, char *out)
{
    double magnitude = v < 0 ? -v : v;
    if (!(magnitude >= 1e-4 && magnitude < 1e15))
        return 0; /* NaN, infinities, zero, tiny and huge values: dtoa */
    for (int k = 0; k <= 19; k++) {
        double scaled = magnitude * POWERS[k];
        if (scaled >= 562949953421312.0) /* 2**49 */
            return 0;
        double p = nearbyint(scaled), off = scaled - p;
        int here = p / POWERS[k] == magnitude;
        int below = p >= 1 && (p - 1) / POWERS[k] == magnitude, above = (p + 1) / POWERS[k] == magnitude;
        if (below || above || (here && (off > 0.4 || off < -0.4)))
            return 0; /* cannot happen by the bound above; if it did, dtoa decides */
        if (!here)
            continue;
        unsigned long long digits = (unsigned long long)p, scale = 1;
        for (int i = 0; i < k; i++)
            scale *= 10;
        int n = 0;
        if (v < 0)
            out[n++] = '-';
        n += write_digits(digits / scale, 1, out + n);
        out[n++] = '.';
        if (k == 0)
            out[n++] = '0';
        else
            n += write_digits(digits % scale, k, out + n);
        return n;
    }
    return 0;
}

/* str(obj) (what an f-string's `{obj}` writes for an int) or repr(obj) (`{obj!r}`), as ASCII. */
static int
put_text(Buffer *b, PyObject *obj, int use_repr)
{
    if (PyLong_CheckExact(obj)) {
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (!overflow && !(n == -1 && PyErr_Occurred())) {
            char digits[32];
            int len = 0;
            if (n < 0)
                digits[len++] = '-';
            len += write_digits(n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n, 1, digits + len);
            return put(b, digits, len);
        }
        PyErr_Clear();
    }
    else if (PyFloat_CheckExact(obj)) {
        char quick[64];
        int length = short_repr(PyFloat_AS_DOUBLE(obj), quick);
        if (length > 0)
            return put(b, quick, length);
        char *text = PyOS_double_to_string(PyFloat_AS_DOUBLE(obj), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL)
            return -1;
        int failed = put(b, text, (Py_ssize_t)strlen(text));
        PyMem_Free(text);
        return failed;
    }
    PyObject *str = use_repr ? PyObject_Repr(obj) : PyObject_Str(obj);
    if (str == NULL)
        return -1;
    int failed;
    if (!PyUnicode_IS_ASCII(str)) {
        PyErr_SetString(PyExc_ValueError, "frame_series: not ASCII");
        failed = -1;
    }
    else
        failed = put(b, (const char *)PyUnicode_DATA(str), PyUnicode_GET_LENGTH(str));
    Py_DECREF(str);
    return failed;
}

static const char OPEN[] = "{\"series\":[";
static const char CLOSE[] = "]}";

/* One series object with one point, as encode.series_fragment writes it. */
static int
put_fragment(Buffer *b, PyObject *sample)
{
    if (!PyTuple_Check(sample) || PyTuple_GET_SIZE(sample) != 4) {
        PyErr_SetString(PyExc_TypeError, "frame_series: a sample is not a 4-tuple");
        return -1;
    }
    PyObject *head = PyTuple_GET_ITEM(sample, 0), *timestamp = PyTuple_GET_ITEM(sample, 1);
    PyObject *value = PyTuple_GET_ITEM(sample, 2), *interval = PyTuple_GET_ITEM(sample, 3);
    if (!PyTuple_Check(head) || PyTuple_GET_SIZE(head) != 2) {
        PyErr_SetString(PyExc_TypeError, "frame_series: a head is not a (prefix, tail) pair");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 2; i++) { /* the head's two pieces, one after the other */
        PyObject *piece = PyTuple_GET_ITEM(head, i);
        if (!PyUnicode_Check(piece) || !PyUnicode_IS_ASCII(piece)) {
            PyErr_SetString(PyExc_ValueError, "frame_series: a head is not ASCII text");
            return -1;
        }
        if (put(b, (const char *)PyUnicode_DATA(piece), PyUnicode_GET_LENGTH(piece)))
            return -1;
    }
    if (interval != Py_None) {
        if (put(b, "\"interval\":", 11) || put_text(b, interval, 0) || put(b, ",", 1))
            return -1;
    }
    if (put(b, "\"points\":[{\"timestamp\":", 23) || put_text(b, timestamp, 0) || put(b, ",\"value\":", 9) ||
        put_text(b, value, 1) || put(b, "}]}", 3))
        return -1;
    return 0;
}

static PyObject *
frame_series(PyObject *module, PyObject *args)
{
    PyObject *samples;
    Py_ssize_t start, stop, limit;
    if (!PyArg_ParseTuple(args, "O!nnn:frame_series", &PyList_Type, &samples, &start, &stop, &limit))
        return NULL;
    if (start < 0 || stop > PyList_GET_SIZE(samples) || start >= stop) {
        PyErr_SetString(PyExc_IndexError, "frame_series: empty or out of range");
        return NULL;
    }
    Buffer b = {NULL, 0, 0};
    Py_ssize_t i = start;
    if (put(&b, OPEN, sizeof(OPEN) - 1))
        goto fail;
    for (; i < stop; i++) {
        Py_ssize_t before = b.size;
        if (i > start && put(&b, ",", 1))
            goto fail;
        if (put_fragment(&b, PyList_GET_ITEM(samples, i)))
            goto fail;
        if (i > start && b.size + (Py_ssize_t)(sizeof(CLOSE) - 1) > limit) {
            b.size = before; /* the run is full: this sample starts the next one */
            break;
        }
    }
    if (put(&b, CLOSE, sizeof(CLOSE) - 1))
        goto fail;
    PyObject *body = PyBytes_FromStringAndSize(b.data, b.size);
    PyMem_Free(b.data);
    if (body == NULL)
        return NULL;
    return Py_BuildValue("Nn", body, i - start);
fail:
    PyMem_Free(b.data);
    return NULL;
}

/* -- Memo ------------------------------------------------------------------------------------------------ */

/* A series' memo (bridge/series/table.py): the few (slot, value) pairs its consumers keep, in a small array
 * searched in order. A dict costs 232 bytes from its first key (its smallest table has room for eight);
 * this is 56 bytes and 16 per pair, which at 100k series is 14 MB less. Keys are compared as == (slots are
 * ints, nearly always the very object stored). Only what the consumers use: get, [], []=, pop, len, values. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t size, capacity;
    PyObject **pairs; /* key, value, key, value, ... */
} Memo;

static PyTypeObject MemoType;

/* Index of the key's pair, -1 if absent, -2 on an error of ==. */
static Py_ssize_t
memo_find(Memo *memo, PyObject *key)
{
    for (Py_ssize_t i = 0; i < memo->size; i++)
        if (memo->pairs[2 * i] == key)
            return i;
    for (Py_ssize_t i = 0; i < memo->size; i++) {
        int equal = PyObject_RichCompareBool(memo->pairs[2 * i], key, Py_EQ);
        if (equal < 0)
            return -2;
        if (equal)
            return i;
    }
    return -1;
}

static PyObject *
memo_lookup(Memo *memo, PyObject *key) /* borrowed; NULL without an error when absent */
{
    Py_ssize_t i = memo_find(memo, key);
    return i >= 0 ? memo->pairs[2 * i + 1] : NULL;
}

static int
memo_set(Memo *memo, PyObject *key, PyObject *value)
{
    Py_ssize_t i = memo_find(memo, key);
    if (i == -2)
        return -1;
    if (i >= 0) {
        Py_INCREF(value);
        Py_SETREF(memo->pairs[2 * i + 1], value);
        return 0;
    }
    if (memo->size == memo->capacity) {
        Py_ssize_t capacity = memo->capacity ? 2 * memo->capacity : 2;
        PyObject **pairs = PyMem_Realloc(memo->pairs, 2 * capacity * sizeof(PyObject *));
        if (pairs == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memo->pairs = pairs;
        memo->capacity = capacity;
    }
    Py_INCREF(key);
    Py_INCREF(value);
    memo->pairs[2 * memo->size] = key;
    memo->pairs[2 * memo->size + 1] = value;
    memo->size++;
    return 0;
}

static int
memo_delete(Memo *memo, Py_ssize_t i)
{
    PyObject *key = memo->pairs[2 * i], *value = memo->pairs[2 * i + 1];
    memo->size--;
    memo->pairs[2 * i] = memo->pairs[2 * memo->size];
    memo->pairs[2 * i + 1] = memo->pairs[2 * memo->size + 1];
    Py_DECREF(key);
    Py_DECREF(value);
    return 0;
}

static PyObject *
memo_create(PyTypeObject *type)
{
    Memo *memo = PyObject_GC_New(Memo, type);
    if (memo == NULL)
        return NULL;
    memo->size = memo->capacity = 0;
    memo->pairs = NULL;
    PyObject_GC_Track(memo);
    return (PyObject *)memo;
}

static PyObject *
memo_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs)) || PyTuple_GET_SIZE(args)) {
        PyErr_SetString(PyExc_TypeError, "Memo() takes no arguments");
        return NULL;
    }
    return memo_create(type);
}

static int
memo_traverse(Memo *memo, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < 2 * memo->size; i++)
        Py_VISIT(memo->pairs[i]);
    return 0;
}

static int
memo_clear(Memo *memo)
{
    Py_ssize_t size = memo->size;
    PyObject **pairs = memo->pairs;
    memo->size = memo->capacity = 0;
    memo->pairs = NULL;
    for (Py_ssize_t i = 0; i < 2 * size; i++)
        Py_DECREF(pairs[i]);
    PyMem_Free(pairs);
    return 0;
}

static void
memo_dealloc(Memo *memo)
{
    PyObject_GC_UnTrack(memo);
    memo_clear(memo);
    PyObject_GC_Del(memo);
}

static int
one_or_two(const char *name, Py_ssize_t nargs)
{
    if (nargs == 1 || nargs == 2)
        return 1;
    PyErr_Format(PyExc_TypeError, "%s expected 1 or 2 arguments, got %zd", name, nargs);
    return 0;
}

static PyObject *
memo_get(Memo *memo, PyObject *const *args, Py_ssize_t nargs)
{
    if (!one_or_two("get", nargs))
        return NULL;
    PyObject *value = memo_lookup(memo, args[0]);
    if (value == NULL) {
        if (PyErr_Occurred())
            return NULL;
        value = nargs > 1 ? args[1] : Py_None;
    }
    return Py_NewRef(value);
}

static PyObject *
memo_pop(Memo *memo, PyObject *const *args, Py_ssize_t nargs)
{
    if (!one_or_two("pop", nargs))
        return NULL;
    Py_ssize_t i = memo_find(memo, args[0]);
    if (i == -2)
        return NULL;
    if (i == -1) {
        if (nargs > 1)
            return Py_NewRef(args[1]);
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    PyObject *value = Py_NewRef(memo->pairs[2 * i + 1]);
    memo_delete(memo, i);
    return value;
}

static PyObject *
memo_values(Memo *memo, PyObject *unused)
{
    PyObject *values = PyList_New(memo->size);
    if (values == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < memo->size; i++)
        PyList_SET_ITEM(values, i, Py_NewRef(memo->pairs[2 * i + 1]));
    return values;
}

static Py_ssize_t
memo_length(Memo *memo)
{
    return memo->size;
}

static PyObject *
memo_subscript(Memo *memo, PyObject *key)
{
    PyObject *value = memo_lookup(memo, key);
    if (value == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    return Py_NewRef(value);
}

static int
memo_ass_subscript(Memo *memo, PyObject *key, PyObject *value)
{
    if (value != NULL)
        return memo_set(memo, key, value);
    Py_ssize_t i = memo_find(memo, key);
    if (i == -2)
        return -1;
    if (i == -1) {
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    return memo_delete(memo, i);
}

static PyMethodDef memo_methods[] = {
    {"get", (PyCFunction)(void (*)(void))memo_get, METH_FASTCALL, "get(slot, default=None): the slot's value."},
    {"pop", (PyCFunction)(void (*)(void))memo_pop, METH_FASTCALL, "pop(slot[, default]): remove and return it."},
    {"values", (PyCFunction)memo_values, METH_NOARGS, "values() -> list: the values, in no particular order."},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods memo_mapping = {
    (lenfunc)memo_length,
    (binaryfunc)memo_subscript,
    (objobjargproc)memo_ass_subscript,
};

static PyTypeObject MemoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bridge._speedups.Memo",
    .tp_doc = "A series' memo: (slot, value) pairs, in 16 bytes each rather than a dict's 232 from its first key.",
    .tp_basicsize = sizeof(Memo),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = memo_new,
    .tp_dealloc = (destructor)memo_dealloc,
    .tp_traverse = (traverseproc)memo_traverse,
    .tp_clear = (inquiry)memo_clear,
    .tp_methods = memo_methods,
    .tp_as_mapping = &memo_mapping,
};

/* -- Series ---------------------------------------------------------------------------------------------- */

/* A series of the series table (bridge/series/table.py, whose Python class is the reference): the same eight
 * attributes, made without running Python code, so a first scrape's 100k entries cost what a dict insert does. */
typedef struct {
    PyObject_HEAD
    PyObject *attributes, *family, *key, *last, *lifted, *members, *memo, *seen_ns;
} Series;

static PyTypeObject SeriesType;
static PyObject *ZERO; /* 0, the seen_ns of a series never observed */

/* A new Series; `members` NULL for a family table of its own. */
static PyObject *
series_create(PyObject *family, PyObject *key, PyObject *attributes, PyObject *lifted, PyObject *members)
{
    PyObject *memo = memo_create(&MemoType);
    PyObject *own = members == NULL ? PyDict_New() : Py_NewRef(members);
    Series *series = memo != NULL && own != NULL ? PyObject_GC_New(Series, &SeriesType) : NULL;
    if (series == NULL) {
        Py_XDECREF(memo);
        Py_XDECREF(own);
        return NULL;
    }
    series->family = Py_NewRef(family);
    series->key = Py_NewRef(key);
    series->attributes = Py_NewRef(attributes);
    series->lifted = Py_NewRef(lifted);
    series->seen_ns = Py_NewRef(ZERO);
    series->last = Py_NewRef(Py_None);
    series->memo = memo;
    series->members = own;
    PyObject_GC_Track(series);
    return (PyObject *)series;
}

static PyObject *
series_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"family", "key", "attributes", "lifted", "members", NULL};
    PyObject *family, *key, *attributes, *lifted = NULL, *members = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OO:Series", keywords, &family, &key, &attributes, &lifted,
                                     &members))
        return NULL;
    PyObject *taken = lifted == NULL ? PyTuple_New(0) : Py_NewRef(lifted);
    if (taken == NULL)
        return NULL;
    PyObject *series = series_create(family, key, attributes, taken, members == Py_None ? NULL : members);
    Py_DECREF(taken);
    return series;
}

static int
series_traverse(Series *series, visitproc visit, void *arg)
{
    Py_VISIT(series->attributes);
    Py_VISIT(series->family);
    Py_VISIT(series->key);
    Py_VISIT(series->last);
    Py_VISIT(series->lifted);
    Py_VISIT(series->members);
    Py_VISIT(series->memo);
    Py_VISIT(series->seen_ns);
    return 0;
}

static int
series_clear(Series *series)
{
    Py_CLEAR(series->attributes);
    Py_CLEAR(series->family);
    Py_CLEAR(series->key);
    Py_CLEAR(series->last);
    Py_CLEAR(series->lifted);
    Py_CLEAR(series->members);
    Py_CLEAR(series->memo);
    Py_CLEAR(series->seen_ns);
    return 0;
}

static void
series_dealloc(Series *series)
{
    PyObject_GC_UnTrack(series);
    Py_TRASHCAN_BEGIN(series, series_dealloc)
    series_clear(series);
    PyObject_GC_Del(series);
    Py_TRASHCAN_END
}

static PyObject *
series_repr(Series *series)
{
    if (series->family == NULL || series->attributes == NULL)
        return PyUnicode_FromString("Series(<cleared>)");
    return PyUnicode_FromFormat("Series(%R, %R)", series->family, series->attributes);
}

static PyMemberDef series_members[] = {
    {"attributes", T_OBJECT_EX, offsetof(Series, attributes), 0, NULL},
    {"family", T_OBJECT_EX, offsetof(Series, family), 0, NULL},
    {"key", T_OBJECT_EX, offsetof(Series, key), 0, NULL},
    {"last", T_OBJECT_EX, offsetof(Series, last), 0, NULL},
    {"lifted", T_OBJECT_EX, offsetof(Series, lifted), 0, NULL},
    {"members", T_OBJECT_EX, offsetof(Series, members), 0, NULL},
    {"memo", T_OBJECT_EX, offsetof(Series, memo), 0, NULL},
    {"seen_ns", T_OBJECT_EX, offsetof(Series, seen_ns), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SeriesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bridge._speedups.Series",
    .tp_doc = "Series(family, key, attributes, lifted=(), members=None): one series of the series table.",
    .tp_basicsize = sizeof(Series),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = series_new,
    .tp_dealloc = (destructor)series_dealloc,
    .tp_traverse = (traverseproc)series_traverse,
    .tp_clear = (inquiry)series_clear,
    .tp_repr = (reprfunc)series_repr,
    .tp_members = series_members,
};

/* intern_keys(members, family, keys): each key's series in `members`, a new one (its key as its attributes,
 * nothing lifted) added for each key not there; SeriesTable.intern_all is the Python reference. */
static PyObject *
intern_keys(PyObject *module, PyObject *args)
{
    PyObject *members, *family, *keys;
    if (!PyArg_ParseTuple(args, "O!UO!:intern_keys", &PyDict_Type, &members, &family, &PyList_Type, &keys))
        return NULL;
    PyObject *nothing_lifted = PyTuple_New(0);
    PyObject *found = nothing_lifted == NULL ? NULL : PyList_New(PyList_GET_SIZE(keys));
    if (found == NULL) {
        Py_XDECREF(nothing_lifted);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *series = PyDict_GetItemWithError(members, key);
        if (series != NULL)
            Py_INCREF(series);
        else if (PyErr_Occurred())
            goto fail;
        else {
            series = series_create(family, key, key, nothing_lifted, members);
            if (series == NULL)
                goto fail;
            if (PyDict_SetItem(members, key, series) < 0) {
                Py_DECREF(series);
                goto fail;
            }
        }
        PyList_SET_ITEM(found, i, series);
    }
    Py_DECREF(nothing_lifted);
    return found;
fail:
    Py_DECREF(nothing_lifted);
    Py_DECREF(found); /* items not set yet are NULL, which list_dealloc skips */
    return NULL;
}

/* The value at `slot` of a memo (the C Memo, a dict, or any mapping); NULL, with no error set, when absent. */
static PyObject *
memo_value(PyObject *memo, PyObject *slot)
{
    if (Py_IS_TYPE(memo, &MemoType))
        return Py_XNewRef(memo_lookup((Memo *)memo, slot));
    if (PyDict_CheckExact(memo))
        return Py_XNewRef(PyDict_GetItemWithError(memo, slot));
    PyObject *value = PyObject_GetItem(memo, slot);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_KeyError))
        PyErr_Clear();
    return value;
}

/* Keep `value` at `slot` of a memo (the C Memo, or any mapping); -1 on an error. */
static int
memo_store(PyObject *memo, PyObject *slot, PyObject *value)
{
    return Py_IS_TYPE(memo, &MemoType) ? memo_set((Memo *)memo, slot, value) : PyObject_SetItem(memo, slot, value);
}

/* -- number_points --------------------------------------------------------------------------------------- */

static PyObject *MEMO; /* "memo", interned */

static void
put_le64(unsigned char *out, unsigned long long n)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(n >> (8 * i));
}

static void
release(PyObject **objects, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++)
        Py_DECREF(objects[i]);
    PyMem_Free(objects);
}

/* NumberDataPoint: start_time_unix_nano = 2, time_unix_nano = 3 (fixed64), as_double = 4 (double) */
#define NUMBER_FIXED_SIZE 27

static PyObject *
number_points(PyObject *module, PyObject *args)
{
    PyObject *series, *values, *starts, *ends, *slot;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O:number_points", &PyList_Type, &series, &PyList_Type, &values,
                          &PyList_Type, &starts, &PyList_Type, &ends, &slot))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(series);
    if (PyList_GET_SIZE(values) != n || PyList_GET_SIZE(starts) != n || PyList_GET_SIZE(ends) != n)
        Py_RETURN_NONE; /* the Python code says what is wrong */
    PyObject **framed = PyMem_Malloc((n ? n : 1) * sizeof(PyObject *));
    if (framed == NULL)
        return PyErr_NoMemory();
    Py_ssize_t total = 0, held = 0;
    for (Py_ssize_t i = 0; i < n; i++) { /* every point must be the plain case, else the Python code does it all */
        PyObject *memo = PyObject_GetAttr(PyList_GET_ITEM(series, i), MEMO);
        if (memo == NULL)
            goto fail;
        PyObject *head = memo_value(memo, slot); /* held until the end: nothing may free it between the passes */
        Py_DECREF(memo);
        if (head == NULL && PyErr_Occurred())
            goto fail;
        PyObject *value = PyList_GET_ITEM(values, i);
        PyObject *start = PyList_GET_ITEM(starts, i), *end = PyList_GET_ITEM(ends, i);
        if (head == NULL || !PyBytes_CheckExact(head) || !PyFloat_CheckExact(value) ||
            isnan(PyFloat_AS_DOUBLE(value)) || !PyLong_CheckExact(start) || !PyLong_CheckExact(end)) {
            Py_XDECREF(head);
            goto python;
        }
        framed[held++] = head;
        total += PyBytes_GET_SIZE(head) + NUMBER_FIXED_SIZE;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        goto fail;
    unsigned char *at = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size = PyBytes_GET_SIZE(framed[i]);
        memcpy(at, PyBytes_AS_STRING(framed[i]), size);
        at += size;
        unsigned long long start = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(starts, i));
        unsigned long long end = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(ends, i));
        if (PyErr_Occurred()) { /* negative or past 2**64: struct.pack raises its own error in the Python code */
            PyErr_Clear();
            Py_DECREF(out);
            goto python;
        }
        double value = PyFloat_AS_DOUBLE(PyList_GET_ITEM(values, i));
        unsigned long long bits;
        memcpy(&bits, &value, sizeof(bits));
        at[0] = 2 << 3 | 1;
        put_le64(at + 1, start);
        at[9] = 3 << 3 | 1;
        put_le64(at + 10, end);
        at[18] = 4 << 3 | 1;
        put_le64(at + 19, bits);
        at += NUMBER_FIXED_SIZE;
    }
    release(framed, held);
    return out;
python:
    release(framed, held);
    Py_RETURN_NONE;
fail:
    release(framed, held);
    return NULL;
}

/* -- own_heads ------------------------------------------------------------------------------------------- */

static PyObject *ATTRIBUTES; /* "attributes", interned */

/* The value cached under `key`, made by `make(key)` and cached where there is none (a new reference). */
static PyObject *
cached(PyObject *cache, PyObject *key, PyObject *make)
{
    PyObject *value = PyDict_GetItemWithError(cache, key);
    if (value != NULL)
        return Py_NewRef(value);
    if (PyErr_Occurred())
        return NULL;
    value = PyObject_CallOneArg(make, key);
    if (value != NULL && PyDict_SetItem(cache, key, value) < 0)
        Py_CLEAR(value);
    return value;
}

static PyObject *
memo_fill(PyObject *module, PyObject *args)
{
    PyObject *entries, *slot, *cache, *make;
    if (!PyArg_ParseTuple(args, "O!OO!O:memo_fill", &PyList_Type, &entries, &slot, &PyDict_Type, &cache, &make))
        return NULL;
    int filled = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i), *value = NULL, *attributes = NULL;
        PyObject *memo = PyObject_GetAttr(entry, MEMO);
        if (memo == NULL || ((value = memo_value(memo, slot)) == NULL && PyErr_Occurred()))
            goto failed;
        if (value == NULL) {
            attributes = PyObject_GetAttr(entry, ATTRIBUTES);
            if (attributes == NULL || (value = cached(cache, attributes, make)) == NULL ||
                memo_store(memo, slot, value) < 0)
                goto failed;
            filled = 1;
        }
        Py_DECREF(memo);
        Py_DECREF(value);
        Py_XDECREF(attributes);
        continue;
    failed:
        Py_XDECREF(memo);
        Py_XDECREF(value);
        Py_XDECREF(attributes);
        return NULL;
    }
    return PyBool_FromLong(filled);
}

/* -- mark_seen ------------------------------------------------------------------------------------------- */

static PyObject *SEEN_NS; /* "seen_ns", interned */

static PyObject *
mark_seen(PyObject *module, PyObject *args)
{
    PyObject *entries, *end;
    if (!PyArg_ParseTuple(args, "O!O:mark_seen", &PyList_Type, &entries, &end))
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (Py_IS_TYPE(entry, &SeriesType)) {
            Py_SETREF(((Series *)entry)->seen_ns, Py_NewRef(end));
            continue;
        }
        Py_INCREF(entry); /* any other entry through its own __setattr__, which may change the list */
        int failed = PyObject_SetAttr(entry, SEEN_NS, end);
        Py_DECREF(entry);
        if (failed)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
own_heads(PyObject *module, PyObject *args)
{
    PyObject *entries, *slot, *tails, *make_tail, *prefixes, *make_prefix;
    if (!PyArg_ParseTuple(args, "O!OO!OO!O:own_heads", &PyList_Type, &entries, &slot, &PyDict_Type, &tails,
                          &make_tail, &PyDict_Type, &prefixes, &make_prefix))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(entries);
    PyObject *heads = PyList_New(n);
    if (heads == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i), *memo = NULL, *head = NULL;
        PyObject *attributes = NULL, *tagging = NULL, *prefix = NULL;
        if (slot != Py_None) {
            memo = PyObject_GetAttr(entry, MEMO);
            if (memo == NULL || ((head = memo_value(memo, slot)) == NULL && PyErr_Occurred()))
                goto entry_failed;
        }
        if (head == NULL) {
            attributes = PyObject_GetAttr(entry, ATTRIBUTES);
            if (attributes == NULL || (tagging = cached(tails, attributes, make_tail)) == NULL)
                goto entry_failed;
            if (!PyTuple_CheckExact(tagging) || PyTuple_GET_SIZE(tagging) != 3) {
                PyErr_SetString(PyExc_TypeError, "own_heads: make_tail must return (suffix, tags, tail)");
                goto entry_failed;
            }
            prefix = cached(prefixes, PyTuple_GET_ITEM(tagging, 0), make_prefix);
            if (prefix == NULL || (head = PyTuple_Pack(2, prefix, PyTuple_GET_ITEM(tagging, 2))) == NULL)
                goto entry_failed;
            if (memo != NULL && memo_store(memo, slot, head) < 0)
                goto entry_failed;
        }
        PyList_SET_ITEM(heads, i, head);
        Py_XDECREF(memo);
        Py_XDECREF(attributes);
        Py_XDECREF(tagging);
        Py_XDECREF(prefix);
        continue;
    entry_failed:
        Py_XDECREF(head);
        Py_XDECREF(memo);
        Py_XDECREF(attributes);
        Py_XDECREF(tagging);
        Py_XDECREF(prefix);
        for (Py_ssize_t j = i; j < n; j++) /* the list's unset items must be valid for its deallocation */
            PyList_SET_ITEM(heads, j, Py_NewRef(Py_None));
        Py_DECREF(heads);
        return NULL;
    }
    return heads;
}

static PyMethodDef methods[] = {
    {"recognise", recognise, METH_VARARGS,
     "recognise(text, learned, starts, lengths, samples) -> list[float] | None: the values of a body that is the "
     "remembered one, `learned`, but for them; line i must start with learned[starts[i]:starts[i] + lengths[i]]."},
    {"sample_run", sample_run, METH_VARARGS,
     "sample_run(lines, index, names, cache, allowed, sample_names, labels, values) -> int: appends the usual "
     "sample lines from lines[index] on to a family's columns as the parser would, and returns the index of the "
     "first line it leaves to the parser."},
    {"intern_keys", intern_keys, METH_VARARGS,
     "intern_keys(members, family, keys) -> list[Series]: each key's series in members, new ones added."},
    {"learn", learn, METH_VARARGS,
     "learn(text) -> (starts, lengths, samples, values) | None: where each line starts and how long its head is "
     "(32-bit offsets as bytes), which lines are samples, and each sample's value; None if a line has no value."},
    {"frame_series", frame_series, METH_VARARGS,
     "frame_series(samples, start, stop, limit) -> (bytes, int): a Datadog series body and how many it holds."},
    {"memo_fill", memo_fill, METH_VARARGS,
     "memo_fill(entries, slot, cache, make) -> bool: where an entry's memo has nothing at `slot`, keep there what "
     "cache holds for its attributes (make(attributes), cached, on a miss); whether any entry had nothing."},
    {"mark_seen", mark_seen, METH_VARARGS,
     "mark_seen(entries, end_ns) -> None: sets each entry's seen_ns to end_ns."},
    {"own_heads", own_heads, METH_VARARGS,
     "own_heads(entries, slot, tails, make_tail, prefixes, make_prefix) -> list: each entry's Datadog head: the one "
     "in its memo at `slot`, else (prefix, tail) made and kept there (slot None: made for every entry, kept nowhere). "
     "tails caches make_tail(attributes) -> (suffix, tags, tail); prefixes caches make_prefix(suffix)."},
    {"number_points", number_points, METH_VARARGS,
     "number_points(series, values, starts, ends, slot) -> bytes | None: OTLP NumberDataPoints, or None to leave "
     "them to the Python code (a head not made yet, a NaN, a value that is not a float)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "bridge._speedups", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    MEMO = PyUnicode_InternFromString("memo");
    ATTRIBUTES = PyUnicode_InternFromString("attributes");
    SEEN_NS = PyUnicode_InternFromString("seen_ns");
    ZERO = PyLong_FromLong(0);
    if (MEMO == NULL || ATTRIBUTES == NULL || SEEN_NS == NULL || ZERO == NULL || PyType_Ready(&MemoType) < 0 || PyType_Ready(&SeriesType) < 0)
        return NULL;
    PyObject *created = PyModule_Create(&module);
    if (created == NULL)
        return NULL;
    if (PyModule_AddObjectRef(created, "Memo", (PyObject *)&MemoType) < 0 ||
        PyModule_AddObjectRef(created, "Series", (PyObject *)&SeriesType) < 0) {
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
