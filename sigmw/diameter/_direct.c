/*
 * Direct: the relay's hot path in C from a message read to its send held for the loop
 * iteration's flush (part of sigmw.diameter._speedups).
 *
 * The Python chain stays the reference and takes every message this file does not:
 *   SCTP: Daemon._direct_sctp -> DiameterService.handle -> DiameterCore.received ->
 *         Relay.on_request/on_answer (RelayHot) -> DiameterService.perform_now ->
 *         SctpEndpoint.try_send (_plain_cmsgs, _hold, Traffic.count);
 *   TCP:  Daemon._direct -> DiameterService.direct -> handle -> ... -> TcpEndpoint.try_send
 *         (_Connection.write).
 * About ten Python calls a message, which cost several times the relay work itself
 * (docs/benchmark.md). A Direct does the same for the usual message and leaves the same
 * state; whatever else it meets goes the Python way, before anything was changed:
 *
 *   in:   bytes of at least a header, not a management command (CER, DWR, DPR and their
 *         answers), on an open connection whose watchdog is OKAY (DiameterCore.conns'
 *         `fast` slot), taken by RelayHot (sigmw_hot_request / sigmw_hot_answer);
 *   out:  the target's connection (the daemon's `where`; with none the send is skipped,
 *         as perform_now skips it); on an SctpEndpoint, its
 *         queue empty, the stream under the outbound count, the ancillary data and the
 *         traffic cell already made, a burst already held for the association; on a
 *         TcpEndpoint, the connection open and not pushing back, its flush armed and the
 *         cork under CORK_BYTES. Otherwise the endpoint's own try_send runs, and a send it
 *         refuses is deferred as perform_now does (`defer`).
 *
 * An exception (out of memory, a broken table) is reported through `failed` and the
 * message counts as taken, as DiameterService.handle does. How many messages took each
 * way is counted on the RelayHot (hot_path_in_c, hot_path_to_python: relay events).
 */
#include "_speedups.h" /* first: Python.h */

#include <stddef.h>
#include <structmember.h>

#define MAX_MANAGEMENT 8
#define DIRECTION_OUT 1
#define PPID_DIAMETER 46

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *hot;       /* RelayHot */
    PyObject *conns;     /* dict: (endpoint, assoc) -> node._Conn (DiameterCore.conns) */
    PyObject *where;     /* dict: peer -> (endpoint, assoc) (the daemon's) */
    PyObject *ep;        /* the endpoint this one reads for */
    PyObject *dialers;   /* dict: peer -> endpoint (the daemon's dialers) */
    PyObject *dialer;    /* str: the peer `ep` dials, "" for a listener */
    PyObject *sctp_type; /* io.endpoint.SctpEndpoint */
    PyObject *tcp_type;  /* io.tcp.TcpEndpoint */
    PyObject *handle;    /* DiameterService.handle(conn, data, now) -> deferred */
    PyObject *defer;     /* (endpoint, peer, data, stream): a send that must wait */
    PyObject *failed;    /* (exception): report an error, as handle does */
    PyObject *clock;     /* () -> now, for TCP batches */
    PyObject *ppid_out;  /* int 46 */
    PyObject *out;       /* int 1: Traffic's OUT */
    Py_ssize_t cork_bytes;
    uint32_t management[MAX_MANAGEMENT];
    int n_management;
} Direct;

static PyObject *s_fast, *s_info, *s_name, *s_last_rx, *s_tx, *s_associations, *s_outbound,
    *s_cmsgs, *s_held, *s_traffic, *s_counts, *s_conns, *s_write_paused, *s_closing, *s_lost,
    *s_flush_armed, *s_out_bytes, *s_out, *s_try_send;

/* getattr: a new reference, NULL with an error set. */
#define GET(obj, name) PyObject_GetAttr((obj), (name))

/* -1 with a TypeError: an endpoint's attribute is not what its class makes. */
static int wrong(const char *what)
{
    PyErr_Format(PyExc_TypeError, "Direct: the endpoint's %s is not a dict", what);
    return -1;
}

static int is_management(Direct *self, const unsigned char *d)
{
    uint32_t code = ((uint32_t)d[5] << 16) | ((uint32_t)d[6] << 8) | d[7];
    for (int i = 0; i < self->n_management; i++)
        if (self->management[i] == code)
            return 1;
    return 0;
}

/* The value of dict[(a, b, c)] or of dict[(a, b, c, d)] (d NULL: three), borrowed; NULL
 * with no error when it is not there. */
static PyObject *get_keyed(PyObject *dict, PyObject *a, PyObject *b, PyObject *c, PyObject *d)
{
    PyObject *key = d == NULL ? PyTuple_Pack(3, a, b, c) : PyTuple_Pack(4, a, b, c, d);
    if (key == NULL)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(dict, key);
    Py_DECREF(key);
    return found;
}

/* SctpEndpoint.try_send when all it needs exists already: 1 held, 0 not this way (the
 * endpoint's try_send decides), -1 error. */
static int sctp_hold(Direct *self, PyObject *ep, PyObject *assoc, PyObject *msg, long stream)
{
    PyObject *tx = GET(ep, s_tx), *assocs = NULL, *cmsgs_of = NULL, *held = NULL;
    PyObject *traffic = NULL, *counts = NULL, *stream_obj = NULL;
    PyObject *cmsgs = NULL;
    int rc = -1;
    if (tx == NULL || (!PyDict_Check(tx) && wrong("_tx")))
        goto done;
    int queued = PyDict_Contains(tx, assoc);
    if (queued != 0) {
        rc = queued < 0 ? -1 : 0;
        goto done;
    }
    if ((assocs = GET(ep, s_associations)) == NULL ||
        (!PyDict_Check(assocs) && wrong("associations")))
        goto done;
    PyObject *known = PyDict_GetItemWithError(assocs, assoc);
    if (known == NULL && PyErr_Occurred())
        goto done;
    if (known != NULL) {
        PyObject *outbound = GET(known, s_outbound);
        long streams = outbound == NULL ? -1 : PyLong_AsLong(outbound);
        Py_XDECREF(outbound);
        if (streams == -1 && PyErr_Occurred())
            goto done;
        if (stream >= streams) {
            rc = 0;
            goto done;
        }
    }
    if ((stream_obj = PyLong_FromLong(stream)) == NULL)
        goto done;
    if ((cmsgs_of = GET(ep, s_cmsgs)) == NULL || (!PyDict_Check(cmsgs_of) && wrong("_cmsgs")))
        goto done;
    cmsgs = get_keyed(cmsgs_of, assoc, stream_obj, self->ppid_out, NULL);
    Py_XINCREF(cmsgs);
    if ((held = GET(ep, s_held)) == NULL || (!PyDict_Check(held) && wrong("_held")))
        goto done;
    PyObject *burst = cmsgs == NULL ? NULL : PyDict_GetItemWithError(held, assoc);
    if ((traffic = GET(ep, s_traffic)) == NULL || (counts = GET(traffic, s_counts)) == NULL ||
        (!PyDict_Check(counts) && wrong("traffic.counts")))
        goto done;
    PyObject *cell = burst == NULL ? NULL
                                   : get_keyed(counts, assoc, self->out, self->ppid_out, stream_obj);
    if (PyErr_Occurred())
        goto done;
    if (cell == NULL || !PyList_CheckExact(burst) || !PyList_CheckExact(cell) ||
        PyList_GET_SIZE(cell) != 2) {
        rc = 0; /* a first message this iteration, a new key: Python makes them */
        goto done;
    }
    PyObject *entry = PyTuple_Pack(2, msg, cmsgs);
    if (entry == NULL)
        goto done;
    int appended = PyList_Append(burst, entry);
    Py_DECREF(entry);
    if (appended == 0 && sigmw_count_cell(cell, 1, PyBytes_GET_SIZE(msg)) == 0)
        rc = 1;
done:
    Py_XDECREF(tx);
    Py_XDECREF(assocs);
    Py_XDECREF(cmsgs_of);
    Py_XDECREF(held);
    Py_XDECREF(traffic);
    Py_XDECREF(counts);
    Py_XDECREF(stream_obj);
    Py_XDECREF(cmsgs);
    return rc;
}

/* TcpEndpoint.try_send when the connection's cork takes it without a flush or arming one:
 * 1 corked, 0 not this way, -1 error. */
static int tcp_cork(Direct *self, PyObject *ep, PyObject *assoc, PyObject *msg)
{
    PyObject *conns = GET(ep, s_conns), *out = NULL, *size = NULL;
    int rc = -1;
    if (conns == NULL || (!PyDict_Check(conns) && wrong("_conns")))
        goto done;
    PyObject *conn = PyDict_GetItemWithError(conns, assoc);
    if (conn == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    Py_INCREF(conn);
    PyObject *flags[] = {s_write_paused, s_closing, s_lost, s_flush_armed};
    for (int i = 0; i < 4; i++) {
        PyObject *flag = GET(conn, flags[i]);
        if (flag == NULL) {
            Py_DECREF(conn);
            goto done;
        }
        Py_DECREF(flag);
        if (flag != (i == 3 ? Py_True : Py_False)) {
            Py_DECREF(conn);
            rc = 0;
            goto done;
        }
    }
    PyObject *was = GET(conn, s_out_bytes);
    Py_ssize_t bytes = was == NULL ? -1 : PyLong_AsSsize_t(was);
    Py_XDECREF(was);
    if (bytes < 0 || (out = GET(conn, s_out)) == NULL || !PyList_CheckExact(out)) {
        Py_DECREF(conn);
        if (!PyErr_Occurred())
            rc = 0;
        goto done;
    }
    bytes += PyBytes_GET_SIZE(msg);
    if (bytes >= self->cork_bytes) {
        Py_DECREF(conn);
        rc = 0; /* write() flushes now: Python's */
        goto done;
    }
    if ((size = PyLong_FromSsize_t(bytes)) != NULL && PyList_Append(out, msg) == 0 &&
        PyObject_SetAttr(conn, s_out_bytes, size) == 0)
        rc = 1;
    Py_DECREF(conn);
done:
    Py_XDECREF(conns);
    Py_XDECREF(out);
    Py_XDECREF(size);
    return rc;
}

/* What perform_now does with one Send: 1 sent or held (or nowhere to go, as there), 2 the
 * send must wait and was deferred, -1 error. */
static int send_one(Direct *self, PyObject *peer, PyObject *msg, long stream)
{
    PyObject *target = PyDict_GetItemWithError(self->where, peer);
    if (target == NULL)
        return PyErr_Occurred() ? -1 : 1; /* no connection: perform_now skips it too */
    if (!PyTuple_CheckExact(target) || PyTuple_GET_SIZE(target) != 2) {
        PyErr_SetString(PyExc_TypeError, "where: peer -> (endpoint, assoc)");
        return -1;
    }
    PyObject *ep = Py_NewRef(PyTuple_GET_ITEM(target, 0));
    PyObject *assoc = Py_NewRef(PyTuple_GET_ITEM(target, 1));
    PyObject *stream_obj = NULL, *res = NULL;
    int rc = 0;
    if ((PyObject *)Py_TYPE(ep) == self->sctp_type)
        rc = sctp_hold(self, ep, assoc, msg, stream);
    else if ((PyObject *)Py_TYPE(ep) == self->tcp_type)
        rc = tcp_cork(self, ep, assoc, msg);
    if (rc != 0)
        goto done;
    rc = -1;
    if ((stream_obj = PyLong_FromLong(stream)) == NULL)
        goto done;
    PyObject *args[] = {ep, msg, assoc, stream_obj, self->ppid_out};
    res = PyObject_VectorcallMethod(s_try_send, args, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    int sent = res == NULL ? -1 : PyObject_IsTrue(res);
    if (sent != 0) {
        rc = sent;
        goto done;
    }
    Py_CLEAR(res);
    PyObject *defer_args[] = {self->ep, peer, msg, stream_obj};
    res = PyObject_Vectorcall(self->defer, defer_args, 4, NULL);
    if (res != NULL)
        rc = 2;
done:
    Py_DECREF(ep);
    Py_DECREF(assoc);
    Py_XDECREF(stream_obj);
    Py_XDECREF(res);
    return rc;
}

/* One message on the C path: 1 taken, 2 taken and its send deferred, 0 not the usual
 * case (nothing changed but the watchdog's last_rx: the Python path runs), -1 error. */
static int relay_one(Direct *self, PyObject *assoc, PyObject *data, PyObject *now_obj, double now)
{
    if (!PyBytes_CheckExact(data))
        return 0;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    if (PyBytes_GET_SIZE(data) < HEADER_LEN || is_management(self, d))
        return 0;
    PyObject *key = PyTuple_Pack(2, self->ep, assoc);
    if (key == NULL)
        return -1;
    PyObject *conn = PyDict_GetItemWithError(self->conns, key);
    Py_DECREF(key);
    if (conn == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *slot = GET(conn, s_fast);
    if (slot == NULL)
        return -1;
    if (slot == Py_None) {
        Py_DECREF(slot);
        return 0;
    }
    PyObject *info = GET(slot, s_info);
    PyObject *name = info == NULL ? NULL : GET(info, s_name);
    Py_XDECREF(info);
    /* Fed to the watchdog when its timer comes due, as DiameterCore.received does. */
    if (name == NULL || PyObject_SetAttr(slot, s_last_rx, now_obj) < 0) {
        Py_DECREF(slot);
        Py_XDECREF(name);
        return -1;
    }
    Py_DECREF(slot);
    PyObject *peer = NULL, *msg = NULL;
    long stream = 0;
    int rc = d[4] & FLAG_REQUEST
                 ? sigmw_hot_request(self->hot, name, data, now, &peer, &msg, &stream)
                 : sigmw_hot_answer(self->hot, name, data, now, &peer, &msg, &stream);
    Py_DECREF(name);
    if (rc <= 0)
        return rc;
    rc = send_one(self, peer, msg, stream);
    Py_DECREF(peer);
    Py_DECREF(msg);
    return rc;
}

/* An error in the C path: reported as DiameterService.handle reports one (0), unless it is
 * not an Exception (KeyboardInterrupt, SystemExit: -1, it propagates). */
static int report(Direct *self)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *type, *value, *trace;
    PyErr_Fetch(&type, &value, &trace);
    PyErr_NormalizeException(&type, &value, &trace);
    PyObject *res = value == NULL ? NULL : PyObject_CallOneArg(self->failed, value);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(trace);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* The Python path for one message: DiameterService.handle((ep, assoc), data, now). */
static int handle_in_python(Direct *self, PyObject *assoc, PyObject *data, PyObject *now_obj)
{
    PyObject *conn = PyTuple_Pack(2, self->ep, assoc);
    if (conn == NULL)
        return -1;
    PyObject *args[] = {conn, data, now_obj};
    PyObject *res = PyObject_Vectorcall(self->handle, args, 3, NULL);
    Py_DECREF(conn);
    int deferred = res == NULL ? -1 : PyObject_IsTrue(res);
    Py_XDECREF(res);
    return deferred < 0 ? -1 : 1 + deferred;
}

/* One message either way: 1 taken, 2 taken and deferred, -1 error (not an Exception). */
static int take_one(Direct *self, PyObject *assoc, PyObject *data, PyObject *now_obj, double now)
{
    int rc = relay_one(self, assoc, data, now_obj, now);
    if (rc > 0) {
        sigmw_hot_count(self->hot, 1);
        return rc;
    }
    if (rc == 0) {
        sigmw_hot_count(self->hot, 0);
        rc = handle_in_python(self, assoc, data, now_obj);
    }
    if (rc < 0)
        rc = report(self) < 0 ? -1 : 1;
    return rc;
}

/* The endpoint is a dialer's that a reload replaced: what it still reads is dropped
 * (Daemon._retired). */
static int retired(Direct *self)
{
    if (PyUnicode_GET_LENGTH(self->dialer) == 0)
        return 0;
    PyObject *now_there = PyDict_GetItemWithError(self->dialers, self->dialer);
    if (now_there == NULL && PyErr_Occurred())
        return -1;
    return now_there != self->ep;
}

static int accepted_ppid(PyObject *ppid)
{
    long value = PyLong_AsLong(ppid);
    return value == 0 || value == PPID_DIAMETER;
}

/*
 * direct(assoc_id, ppid, data, now) -> taken: SctpEndpoint.direct (Daemon._direct_sctp):
 * False for a PPID other than Diameter's or on a retired endpoint.
 */
static PyObject *direct_vectorcall(PyObject *obj, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    Direct *self = (Direct *)obj;
    if (PyVectorcall_NARGS(nargsf) != 4 || kwnames != NULL || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "Direct(assoc_id, ppid, data, now)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[3]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (!accepted_ppid(args[1])) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_FALSE;
    }
    int gone = retired(self);
    if (gone != 0)
        return gone < 0 ? NULL : Py_NewRef(Py_False);
    if (take_one(self, args[0], args[2], args[3], now) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/*
 * take(assoc_id, messages: list[bytes]) -> taken: TcpEndpoint.direct (Daemon._direct and
 * DiameterService.direct): how many it took, stopping after one whose send was deferred.
 */
static PyObject *direct_take(Direct *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "take(assoc_id, messages: list)");
        return NULL;
    }
    int gone = retired(self);
    if (gone != 0)
        return gone < 0 ? NULL : PyLong_FromLong(0);
    PyObject *now_obj = PyObject_CallNoArgs(self->clock);
    double now = now_obj == NULL ? -1.0 : PyFloat_AsDouble(now_obj);
    if (now == -1.0 && PyErr_Occurred()) {
        Py_XDECREF(now_obj);
        return NULL;
    }
    PyObject *messages = args[1];
    Py_ssize_t i = 0;
    for (; i < PyList_GET_SIZE(messages); i++) {
        PyObject *data = Py_NewRef(PyList_GET_ITEM(messages, i));
        int rc = take_one(self, args[0], data, now_obj, now);
        Py_DECREF(data);
        if (rc < 0) {
            Py_DECREF(now_obj);
            return NULL;
        }
        if (rc == 2) {
            i++;
            break;
        }
    }
    Py_DECREF(now_obj);
    return PyLong_FromSsize_t(i);
}

static int direct_init(Direct *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"hot",     "conns",  "where",   "ep",     "dialers",
                            "dialer",  "sctp",   "tcp",     "handle", "defer",
                            "failed",  "clock",  "management", "cork_bytes", NULL};
    PyObject *hot, *conns, *where, *ep, *dialers, *dialer, *sctp, *tcp, *handle, *defer;
    PyObject *failed, *clock, *management;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!O!OO!UO!O!OOOOOn", names, &hot, &PyDict_Type,
                                     &conns, &PyDict_Type, &where, &ep, &PyDict_Type, &dialers,
                                     &dialer, &PyType_Type, &sctp, &PyType_Type, &tcp, &handle,
                                     &defer, &failed, &clock, &management, &self->cork_bytes))
        return -1;
    if (!sigmw_is_hot(hot)) {
        PyErr_SetString(PyExc_TypeError, "hot must be a RelayHot");
        return -1;
    }
    PyObject *codes = PySequence_Tuple(management);
    if (codes == NULL)
        return -1;
    if (PyTuple_GET_SIZE(codes) > MAX_MANAGEMENT) {
        Py_DECREF(codes);
        PyErr_SetString(PyExc_ValueError, "too many management commands");
        return -1;
    }
    self->n_management = (int)PyTuple_GET_SIZE(codes);
    for (int i = 0; i < self->n_management; i++)
        self->management[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(codes, i));
    Py_DECREF(codes);
    if (PyErr_Occurred())
        return -1;
    PyObject **slots[] = {&self->hot,     &self->conns,     &self->where,   &self->ep,
                          &self->dialers, &self->dialer,    &self->sctp_type, &self->tcp_type,
                          &self->handle,  &self->defer,     &self->failed,  &self->clock};
    PyObject *values[] = {hot, conns, where, ep, dialers, dialer, sctp, tcp, handle, defer,
                          failed, clock};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        Py_XSETREF(*slots[i], Py_NewRef(values[i]));
    Py_XSETREF(self->ppid_out, PyLong_FromLong(PPID_DIAMETER));
    Py_XSETREF(self->out, PyLong_FromLong(DIRECTION_OUT));
    self->vectorcall = direct_vectorcall;
    return self->ppid_out == NULL || self->out == NULL ? -1 : 0;
}

static int direct_traverse(Direct *self, visitproc visit, void *arg)
{
    Py_VISIT(self->hot);
    Py_VISIT(self->conns);
    Py_VISIT(self->where);
    Py_VISIT(self->ep);
    Py_VISIT(self->dialers);
    Py_VISIT(self->handle);
    Py_VISIT(self->defer);
    Py_VISIT(self->failed);
    Py_VISIT(self->clock);
    return 0;
}

static int direct_clear(Direct *self)
{
    Py_CLEAR(self->hot);
    Py_CLEAR(self->conns);
    Py_CLEAR(self->where);
    Py_CLEAR(self->ep);
    Py_CLEAR(self->dialers);
    Py_CLEAR(self->dialer);
    Py_CLEAR(self->sctp_type);
    Py_CLEAR(self->tcp_type);
    Py_CLEAR(self->handle);
    Py_CLEAR(self->defer);
    Py_CLEAR(self->failed);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->ppid_out);
    Py_CLEAR(self->out);
    return 0;
}

static void direct_dealloc(Direct *self)
{
    PyObject_GC_UnTrack(self);
    direct_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef direct_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Direct, vectorcall), READONLY},
    {NULL},
};

static PyMethodDef direct_methods[] = {
    {"take", (PyCFunction)(void (*)(void))direct_take, METH_FASTCALL,
     "TcpEndpoint.direct: take(assoc_id, messages) -> how many were taken."},
    {NULL},
};

static PyTypeObject DirectType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sigmw.diameter._speedups.Direct",
    .tp_doc = "The relay's hot path from a read message to its held send, for one endpoint.",
    .tp_basicsize = sizeof(Direct),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Direct, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)direct_init,
    .tp_traverse = (traverseproc)direct_traverse,
    .tp_clear = (inquiry)direct_clear,
    .tp_dealloc = (destructor)direct_dealloc,
    .tp_members = direct_members,
    .tp_methods = direct_methods,
};

int sigmw_direct_init(PyObject *module)
{
    struct {
        PyObject **slot;
        const char *name;
    } strings[] = {
        {&s_fast, "fast"},           {&s_info, "info"},
        {&s_name, "name"},           {&s_last_rx, "last_rx"},
        {&s_tx, "_tx"},              {&s_associations, "associations"},
        {&s_outbound, "outbound_streams"}, {&s_cmsgs, "_cmsgs"},
        {&s_held, "_held"},          {&s_traffic, "traffic"},
        {&s_counts, "counts"},       {&s_conns, "_conns"},
        {&s_write_paused, "write_paused"}, {&s_closing, "closing"},
        {&s_lost, "lost"},           {&s_flush_armed, "flush_armed"},
        {&s_out_bytes, "out_bytes"}, {&s_out, "out"},
        {&s_try_send, "try_send"},
    };
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if ((*strings[i].slot = PyUnicode_InternFromString(strings[i].name)) == NULL)
            return -1;
    if (PyType_Ready(&DirectType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "Direct", (PyObject *)&DirectType);
}
