/*
 * sigmw.diameter._speedups: C versions of the relay's byte walks and of its 3004 answer.
 *
 * The pure-Python functions in wire.py and framing.py are the reference; these
 * return exactly what they return for every well-formed input (the tests compare
 * the two on generated and fuzzed messages). Whenever the input is malformed the
 * C functions give up (scan returns None, split reports the offset) and the
 * Python code runs instead, so every error, Result-Code and Failed-AVP still
 * comes from one place.
 *
 * Why C: on the relay's hot path these walks cost about a third of a relayed
 * request + answer in CPython (measured with py-spy; see docs/benchmark.md).
 *
 * _hotpath.c, the module's second file, has the relay's usual request and answer.
 */
#include <string.h>

#include "_speedups.h"

#define FLAGS_RESERVED 0x0F
#define AVP_VENDOR_BIT 0x80

/* RFC 6733 AVP codes the relay reads. */
#define SESSION_ID 263
#define ORIGIN_HOST 264
#define RESULT_CODE 268
#define ROUTE_RECORD 282
#define DESTINATION_REALM 283
#define PROXY_INFO 284
#define REDIRECT_HOST 292
#define DESTINATION_HOST 293
#define ORIGIN_REALM 296
#define EXPERIMENTAL_RESULT 297
#define EXPERIMENTAL_RESULT_CODE 298

/* Append a new bytes object to a tuple held in *slot (tuples, as wire.Scanned keeps them). */
static int tuple_append(PyObject **slot, const char *data, Py_ssize_t len)
{
    PyObject *item = PyBytes_FromStringAndSize(data, len);
    if (item == NULL)
        return -1;
    Py_ssize_t n = *slot == NULL ? 0 : PyTuple_GET_SIZE(*slot);
    PyObject *grown = PyTuple_New(n + 1);
    if (grown == NULL) {
        Py_DECREF(item);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *old = PyTuple_GET_ITEM(*slot, i);
        Py_INCREF(old);
        PyTuple_SET_ITEM(grown, i, old);
    }
    PyTuple_SET_ITEM(grown, n, item);
    Py_XSETREF(*slot, grown);
    return 0;
}

/* Replace *slot with a new bytes object (the last occurrence wins, as in wire.scan). */
static int set_bytes(PyObject **slot, const char *data, Py_ssize_t len)
{
    PyObject *value = PyBytes_FromStringAndSize(data, len);
    if (value == NULL)
        return -1;
    Py_XSETREF(*slot, value);
    return 0;
}

/* wire.Header and wire.Scanned (tuple subclasses), given by register(). */
static PyTypeObject *header_type, *scanned_type;

/* A new instance of a tuple subclass holding n new references, as tuple's own __new__
 * makes one for a subclass; steals the references even on failure. */
static PyObject *new_tuple_of(PyTypeObject *type, PyObject **items, Py_ssize_t n)
{
    PyObject *out = type->tp_alloc(type, n);
    if (out == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(out, i, items[i]);
    return out;
}

enum { F_SESSION, F_DREALM, F_DHOST, F_OHOST, F_OREALM, F_RR, F_RESULT, F_PROXY, F_REDIRECT, NF };

/*
 * scan(data: bytes) -> tuple | None
 *
 * A wire.Scanned (with its wire.Header) as wire.scan_py makes it; None when anything is
 * wrong or register() has not been called.
 */
static PyObject *scan(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg) || scanned_type == NULL)
        Py_RETURN_NONE;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t end = PyBytes_GET_SIZE(arg);
    if (end < HEADER_LEN)
        Py_RETURN_NONE;
    uint32_t vlen = be32(d), fcode = be32(d + 4);
    uint32_t length = vlen & 0xFFFFFF, flags = fcode >> 24;
    if (vlen >> 24 != 1 || (Py_ssize_t)length != end || length % 4 || flags & FLAGS_RESERVED ||
        ((flags & FLAG_REQUEST) && (flags & FLAG_ERROR)))
        Py_RETURN_NONE;

    PyObject *f[NF] = {NULL};
    int64_t result = -1;
    Py_ssize_t off = HEADER_LEN;
    while (off < end) {
        if (end - off < 8)
            goto malformed;
        uint32_t code = be32(d + off), flen = be32(d + off + 4);
        Py_ssize_t alen = flen & 0xFFFFFF;
        Py_ssize_t head = flen & 0x80000000u ? 12 : 8;
        if (alen < head || off + alen > end)
            goto malformed;
        if (head == 8) {
            const char *value = (const char *)d + off + 8;
            Py_ssize_t vlen8 = alen - 8;
            int rc = 0;
            switch (code) {
            case SESSION_ID: rc = set_bytes(&f[F_SESSION], value, vlen8); break;
            case DESTINATION_REALM: rc = set_bytes(&f[F_DREALM], value, vlen8); break;
            case ORIGIN_HOST: rc = set_bytes(&f[F_OHOST], value, vlen8); break;
            case ORIGIN_REALM: rc = set_bytes(&f[F_OREALM], value, vlen8); break;
            case DESTINATION_HOST: rc = set_bytes(&f[F_DHOST], value, vlen8); break;
            case ROUTE_RECORD: rc = tuple_append(&f[F_RR], value, vlen8); break;
            case REDIRECT_HOST: rc = tuple_append(&f[F_REDIRECT], value, vlen8); break;
            case RESULT_CODE:
                if (alen != 12)
                    goto malformed;
                result = (int64_t)be32(d + off + 8);
                break;
            case PROXY_INFO: {
                Py_ssize_t padded = (alen + 3) & ~(Py_ssize_t)3;
                if (off + padded > end)
                    goto malformed; /* the walk fails below anyway */
                rc = tuple_append(&f[F_PROXY], (const char *)d + off, padded);
                break;
            }
            default: break;
            }
            if (rc < 0)
                goto fail;
        }
        off += (alen + 3) & ~(Py_ssize_t)3;
    }
    if (off != end)
        goto malformed;

    uint32_t words[7] = {vlen >> 24, length, flags, fcode & 0xFFFFFF, be32(d + 8), be32(d + 12),
                         be32(d + 16)};
    PyObject *h[7];
    for (int i = 0; i < 7; i++)
        h[i] = PyLong_FromUnsignedLong(words[i]);
    PyObject *items[1 + NF];
    items[0] = new_tuple_of(header_type, h, 7);
    for (int i = 0; i < NF; i++) {
        PyObject *v = f[i];
        if (i == F_RESULT)
            v = result < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(result);
        else if (v == NULL)
            v = (i == F_RR || i == F_PROXY || i == F_REDIRECT) ? PyTuple_New(0) : Py_NewRef(Py_None);
        f[i] = NULL; /* items owns it now */
        items[1 + i] = v;
    }
    for (int i = 0; i < 1 + NF; i++) {
        if (items[i] == NULL) { /* an allocation failed: drop the rest */
            for (int j = 0; j < 1 + NF; j++)
                Py_XDECREF(items[j]);
            return NULL;
        }
    }
    return new_tuple_of(scanned_type, items, 1 + NF);

malformed:
    for (int i = 0; i < NF; i++)
        Py_CLEAR(f[i]);
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < NF; i++)
        Py_CLEAR(f[i]);
    return NULL;
}

/* wire._result_in: the first base AVP `wanted` of length 12 in d[off:end], looking inside
 * Experimental-Result for its Experimental-Result-Code when the Result-Code is wanted. */
static int64_t result_in(const unsigned char *d, Py_ssize_t off, Py_ssize_t end, uint32_t wanted)
{
    while (off + 8 <= end) {
        uint32_t code = be32(d + off), word = be32(d + off + 4);
        Py_ssize_t alen = word & 0xFFFFFF;
        int base = !((word >> 24) & AVP_VENDOR_BIT);
        if (alen < (base ? 8 : 12) || off + alen > end)
            return -1;
        if (base && code == wanted && alen == 12)
            return (int64_t)be32(d + off + 8);
        if (base && code == EXPERIMENTAL_RESULT && wanted == RESULT_CODE) {
            int64_t inner = result_in(d, off + 8, off + alen, EXPERIMENTAL_RESULT_CODE);
            if (inner >= 0)
                return inner;
        }
        off += (alen + 3) & ~(Py_ssize_t)3;
    }
    return -1;
}

PyObject *sigmw_scan(PyObject *data) { return scan(NULL, data); }

int64_t sigmw_result_code(const unsigned char *d, Py_ssize_t len)
{
    return result_in(d, HEADER_LEN, len, RESULT_CODE);
}

/* result_code(data: bytes) -> int | None, as wire.result_code. */
static PyObject *result_code(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int64_t rc = result_in((const unsigned char *)view.buf, HEADER_LEN, view.len, RESULT_CODE);
    PyBuffer_Release(&view);
    if (rc < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(rc);
}

/*
 * split(source, max_size, out: list) -> (end, bad)
 *
 * DiameterFramer._split: appends each whole message of `source` (bytes or bytearray) to
 * `out` and returns where the unfinished rest starts; `bad` is the offset of a header
 * that frames no valid message (the Python code then raises), else -1.
 */
static PyObject *split(PyObject *self, PyObject *args)
{
    PyObject *source, *out;
    Py_ssize_t max_size;
    if (!PyArg_ParseTuple(args, "OnO!", &source, &max_size, &PyList_Type, &out))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(source, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *d = (const unsigned char *)view.buf;
    Py_ssize_t total = view.len, pos = 0, bad = -1;
    while (total - pos >= HEADER_LEN) {
        uint32_t word = be32(d + pos);
        Py_ssize_t length = word & 0xFFFFFF;
        if (word >> 24 != 1 || length & 3 || length > max_size || length < HEADER_LEN) {
            bad = pos;
            break;
        }
        if (total - pos < length)
            break;
        PyObject *msg;
        if (pos == 0 && length == total && PyBytes_CheckExact(source))
            msg = Py_NewRef(source); /* the whole feed is one message: no copy */
        else
            msg = PyBytes_FromStringAndSize((const char *)d + pos, length);
        if (msg == NULL || PyList_Append(out, msg) < 0) {
            Py_XDECREF(msg);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(msg);
        pos += length;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", pos, bad);
}

/*
 * busy_answer(request: bytes, tail: bytes) -> bytes, as wire.busy_answer_py: the
 * request's header with R cleared and E set, its leading Session-Id AVP, then `tail`.
 */
Py_ssize_t sigmw_busy_answer_size(const unsigned char *d, Py_ssize_t len, Py_ssize_t tail_len)
{
    Py_ssize_t session = 0;
    if (len >= 28 && be32(d + 20) == SESSION_ID) {
        Py_ssize_t alen = be32(d + 24) & 0xFFFFFF;
        if (8 < alen && alen <= len - 20) {
            session = (alen + 3) & ~(Py_ssize_t)3;
            if (session > len - 20)
                session = len - 20; /* as a Python slice would cut it */
        }
    }
    return HEADER_LEN + session + tail_len;
}

/* `d` is a request of at least HEADER_LEN bytes; `size` from sigmw_busy_answer_size. */
void sigmw_busy_answer_write(const unsigned char *d, Py_ssize_t size, const char *tail,
                             Py_ssize_t tail_len, unsigned char *o)
{
    o[0] = 1;
    o[1] = (size >> 16) & 0xFF;
    o[2] = (size >> 8) & 0xFF;
    o[3] = size & 0xFF;
    o[4] = (d[4] & 0x40) | FLAG_ERROR; /* P kept; R, T cleared; E set */
    memcpy(o + 5, d + 5, 15);
    memcpy(o + HEADER_LEN, d + 20, size - HEADER_LEN - tail_len);
    memcpy(o + size - tail_len, tail, tail_len);
}

PyObject *sigmw_busy_answer(const unsigned char *d, Py_ssize_t len, PyObject *tail)
{
    Py_ssize_t tail_len = PyBytes_GET_SIZE(tail);
    if (len < HEADER_LEN) {
        PyErr_SetString(PyExc_ValueError, "shorter than a Diameter header");
        return NULL;
    }
    Py_ssize_t size = sigmw_busy_answer_size(d, len, tail_len);
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out != NULL)
        sigmw_busy_answer_write(d, size, PyBytes_AS_STRING(tail), tail_len,
                                (unsigned char *)PyBytes_AS_STRING(out));
    return out;
}

static PyObject *busy_answer(PyObject *self, PyObject *args)
{
    PyObject *request, *tail;
    if (!PyArg_ParseTuple(args, "SS", &request, &tail))
        return NULL;
    return sigmw_busy_answer((const unsigned char *)PyBytes_AS_STRING(request),
                             PyBytes_GET_SIZE(request), tail);
}

/* register(Header, Scanned): the tuple subclasses scan returns. */
static PyObject *register_types(PyObject *self, PyObject *args)
{
    PyTypeObject *h, *sc;
    if (!PyArg_ParseTuple(args, "O!O!", &PyType_Type, &h, &PyType_Type, &sc))
        return NULL;
    if (!PyType_IsSubtype(h, &PyTuple_Type) || !PyType_IsSubtype(sc, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "register() takes two tuple subclasses");
        return NULL;
    }
    Py_XSETREF(header_type, (PyTypeObject *)Py_NewRef(h));
    Py_XSETREF(scanned_type, (PyTypeObject *)Py_NewRef(sc));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"register", register_types, METH_VARARGS, "register(Header, Scanned): scan's result types."},
    {"scan", scan, METH_O, "wire.scan's walk; None when the message is malformed."},
    {"result_code", result_code, METH_O, "wire.result_code."},
    {"busy_answer", busy_answer, METH_VARARGS, "wire.busy_answer."},
    {"split", split, METH_VARARGS, "DiameterFramer._split: (end, offset of a bad header or -1)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sigmw.diameter._speedups",
    "C versions of the relay's byte walks (wire.scan, wire.result_code, framing split).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (sigmw_hotpath_init(m) < 0 || sigmw_shed_init(m) < 0 ||
                      sigmw_direct_init(m) < 0))
        Py_CLEAR(m);
    return m;
}
