/*
 * sigmw.io._mmsg: SCTP messages in batches, recvmmsg(2) and sendmmsg(2).
 *
 * Receive: SctpTransport._on_readable otherwise makes one socket.recvmsg call per
 * message, each building a list of ancillary-data tuples and an address tuple. Here
 * one system call reads up to 64 messages (or pieces of messages) and each comes back
 * as (data, msg_flags, raw SCTP_RCVINFO or None, raw source sockaddr); the Python
 * code decodes the rest only when it needs it.
 *
 * Send: the relay's sends of one loop iteration, gathered per association, leave with
 * two sendmmsg calls per association (and per MAX_CORKED messages) instead of a
 * sendmsg each: its messages but the last with MSG_MORE (the kernel holds them for
 * bundling), then the last without (which sends the bundle).
 *
 * transport.py keeps the recvmsg and sendmsg loops as the reference and falls back to
 * them when this module is not built.
 *
 * Not thread-safe by design: the buffers are static and the GIL is held throughout
 * (the socket is non-blocking, so the call never waits). The receive batch is
 * _recvbatch.h's, shared with the Diameter shedder's recv_shed.
 */
#define PY_SSIZE_T_CLEAN
#include "_recvbatch.h" /* Python.h first */

#include <string.h>

#define RCVINFO_SIZE RECVBATCH_RCVINFO_LEN

static RecvBatch batch;

static PyObject *recv_batch(PyObject *self, PyObject *args)
{
    int fd, want;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iin", &fd, &want, &size))
        return NULL;
    if (want < 1 || want > RECVBATCH_MAX || size < 1 || size > RECVBATCH_MAX_SLOT) {
        PyErr_Format(PyExc_ValueError, "recv_batch: 1..%d messages of 1..%d bytes",
                     RECVBATCH_MAX, RECVBATCH_MAX_SLOT);
        return NULL;
    }
    int got = recvbatch_read(&batch, fd, want, size);
    if (got < 0)
        return NULL;
    PyObject *out = PyList_New(got);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < got; i++) {
        PyObject *item = recvbatch_tuple(&batch, i);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* --- send ------------------------------------------------------------------------ */

#define MAX_CONTROL 128 /* SCTP_SNDINFO and SCTP_PRINFO take 56 bytes */
/* Messages of one association held with MSG_MORE in a row. The kernel holds them until
 * a send without it, or until they fill a packet: on a path with a 64 KiB MTU
 * (loopback) small messages would fill the send buffer first, and a burst stopped
 * there by EAGAIN would wait forever for room that only that send makes. */
#define MAX_CORKED 32

static struct mmsghdr *out_headers;
static struct iovec *out_iovs;
static char (*out_controls)[MAX_CONTROL];
static Py_ssize_t *out_owner; /* the burst each entry belongs to */
static Py_ssize_t out_capacity;

static int ensure_out(Py_ssize_t count)
{
    if (count <= out_capacity)
        return 0;
    Py_ssize_t want = count < 256 ? 256 : count;
    void *h = realloc(out_headers, sizeof *out_headers * (size_t)want);
    if (h != NULL)
        out_headers = h;
    void *v = realloc(out_iovs, sizeof *out_iovs * (size_t)want);
    if (v != NULL)
        out_iovs = v;
    void *c = realloc(out_controls, sizeof *out_controls * (size_t)want);
    if (c != NULL)
        out_controls = c;
    void *o = realloc(out_owner, sizeof *out_owner * (size_t)want);
    if (o != NULL)
        out_owner = o;
    if (h == NULL || v == NULL || c == NULL || o == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out_capacity = want;
    return 0;
}

/* Entry k of the send arrays from one (data, [(level, type, bytes), ...]) pair, the
 * shape socket.sendmsg takes; -1 with a Python error on anything else. */
static int fill_entry(Py_ssize_t k, PyObject *message, Py_ssize_t burst, PyObject **keep)
{
    if (!PyTuple_Check(message) || PyTuple_GET_SIZE(message) != 2) {
        PyErr_SetString(PyExc_TypeError, "send_bursts: each message is (data, cmsgs)");
        return -1;
    }
    PyObject *data = PyTuple_GET_ITEM(message, 0);
    PyObject *cmsgs = PyTuple_GET_ITEM(message, 1);
    if (!PyList_Check(cmsgs)) {
        PyErr_SetString(PyExc_TypeError, "send_bursts: cmsgs is a list");
        return -1;
    }
    if (!PyBytes_Check(data)) { /* a bytearray, say: a copy, kept until the send is done */
        data = PyBytes_FromObject(data);
        if (data == NULL)
            return -1;
        if (*keep == NULL && (*keep = PyList_New(0)) == NULL) {
            Py_DECREF(data);
            return -1;
        }
        int kept = PyList_Append(*keep, data);
        Py_DECREF(data);
        if (kept < 0)
            return -1;
    }
    out_iovs[k].iov_base = PyBytes_AS_STRING(data);
    out_iovs[k].iov_len = (size_t)PyBytes_GET_SIZE(data);
    struct msghdr *msg = &out_headers[k].msg_hdr;
    memset(msg, 0, sizeof *msg);
    msg->msg_iov = &out_iovs[k];
    msg->msg_iovlen = 1;
    size_t used = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cmsgs); i++) {
        PyObject *cmsg = PyList_GET_ITEM(cmsgs, i);
        if (!PyTuple_Check(cmsg) || PyTuple_GET_SIZE(cmsg) != 3 ||
            !PyBytes_Check(PyTuple_GET_ITEM(cmsg, 2))) {
            PyErr_SetString(PyExc_TypeError, "send_bursts: a cmsg is (level, type, bytes)");
            return -1;
        }
        int level = (int)PyLong_AsLong(PyTuple_GET_ITEM(cmsg, 0));
        int type = (int)PyLong_AsLong(PyTuple_GET_ITEM(cmsg, 1));
        if (PyErr_Occurred())
            return -1;
        const char *body = PyBytes_AS_STRING(PyTuple_GET_ITEM(cmsg, 2));
        Py_ssize_t size = PyBytes_GET_SIZE(PyTuple_GET_ITEM(cmsg, 2));
        if (used + CMSG_SPACE((size_t)size) > MAX_CONTROL) {
            PyErr_SetString(PyExc_ValueError, "send_bursts: ancillary data too long");
            return -1;
        }
        struct cmsghdr *c = (struct cmsghdr *)(out_controls[k] + used);
        memset(c, 0, CMSG_SPACE((size_t)size));
        c->cmsg_len = CMSG_LEN((size_t)size);
        c->cmsg_level = level;
        c->cmsg_type = type;
        memcpy(CMSG_DATA(c), body, (size_t)size);
        used += CMSG_SPACE((size_t)size);
    }
    if (used) {
        msg->msg_control = out_controls[k];
        msg->msg_controllen = used;
    }
    out_owner[k] = burst;
    return 0;
}

/* Send entries [pos, end) with as few sendmmsg calls as the kernel allows. A failed
 * entry stops its burst (the burst's later entries are skipped: order within a burst
 * holds); the other bursts go on. */
static void send_entries(int fd, Py_ssize_t pos, Py_ssize_t end, int flags, Py_ssize_t *sent,
                         int *failed)
{
    while (pos < end) {
        Py_ssize_t left = end - pos;
        unsigned int chunk = left > 1024 ? 1024 : (unsigned int)left; /* UIO_MAXIOV */
        int done = sendmmsg(fd, out_headers + pos, chunk, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
        if (done > 0) {
            for (int i = 0; i < done; i++)
                sent[out_owner[pos + i]]++;
            pos += done;
            continue;
        }
        if (done < 0 && errno == EINTR)
            continue;
        Py_ssize_t burst = out_owner[pos];
        failed[burst] = done < 0 ? errno : EAGAIN;
        while (pos < end && out_owner[pos] == burst)
            pos++;
    }
}

static PyObject *send_bursts(PyObject *self, PyObject *args)
{
    int fd, more;
    PyObject *bursts;
    if (!PyArg_ParseTuple(args, "iO!i", &fd, &PyList_Type, &bursts, &more))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(bursts), total = 0;
    for (Py_ssize_t b = 0; b < n; b++) {
        PyObject *burst = PyList_GET_ITEM(bursts, b);
        if (!PyList_Check(burst)) {
            PyErr_SetString(PyExc_TypeError, "send_bursts: each burst is a list");
            return NULL;
        }
        total += PyList_GET_SIZE(burst);
    }
    Py_ssize_t *sent = PyMem_Calloc((size_t)n + 1, sizeof *sent);
    int *failed = PyMem_Calloc((size_t)n + 1, sizeof *failed);
    PyObject *out = NULL, *keep = NULL;
    Py_ssize_t *bounds = NULL; /* where each part (a run with `more`, a last) starts */
    if (sent == NULL || failed == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (ensure_out(total) < 0)
        goto done;
    /* Every entry is built before anything is sent, so a bad one raises with nothing
     * sent. One burst after the other, in rounds of MAX_CORKED messages: the round's
     * messages but its last go with `more` (MSG_MORE: the kernel holds them to bundle),
     * then its last without (that sends the bundle). One burst at a time, so that when
     * the buffer fills only the burst that met it holds messages back (others sharing
     * the socket's buffer then find it full at their first message). */
    Py_ssize_t parts = 0;
    for (Py_ssize_t b = 0; b < n; b++)
        parts += 2 * ((PyList_GET_SIZE(PyList_GET_ITEM(bursts, b)) + MAX_CORKED - 1) / MAX_CORKED);
    bounds = PyMem_Malloc(sizeof *bounds * (size_t)(parts + 1));
    if (bounds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t k = 0, part = 0;
    for (Py_ssize_t b = 0; b < n; b++) {
        PyObject *burst = PyList_GET_ITEM(bursts, b);
        Py_ssize_t size = PyList_GET_SIZE(burst);
        for (Py_ssize_t from = 0; from < size; from += MAX_CORKED) {
            Py_ssize_t last = from + MAX_CORKED < size ? from + MAX_CORKED - 1 : size - 1;
            bounds[part++] = k; /* [from, last) with `more` */
            for (Py_ssize_t i = from; i < last; i++)
                if (fill_entry(k++, PyList_GET_ITEM(burst, i), b, &keep) < 0)
                    goto done;
            bounds[part++] = k; /* last without */
            if (fill_entry(k++, PyList_GET_ITEM(burst, last), b, &keep) < 0)
                goto done;
        }
    }
    bounds[part] = k;
    for (Py_ssize_t p = 0; p < parts; p++)
        if (bounds[p] < bounds[p + 1] && !failed[out_owner[bounds[p]]])
            send_entries(fd, bounds[p], bounds[p + 1], p % 2 ? 0 : more, sent, failed);
    Py_ssize_t count = 0;
    PyObject *stopped = Py_None;
    for (Py_ssize_t b = 0; b < n; b++)
        count += sent[b];
    if (count < total) {
        stopped = PyList_New(0);
        if (stopped == NULL)
            goto done;
        for (Py_ssize_t b = 0; b < n; b++) {
            if (!failed[b])
                continue;
            PyObject *item = Py_BuildValue("(nni)", b, sent[b], failed[b]);
            if (item == NULL || PyList_Append(stopped, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(stopped);
                goto done;
            }
            Py_DECREF(item);
        }
        out = Py_BuildValue("(nN)", count, stopped);
    } else {
        out = Py_BuildValue("(nO)", count, Py_None);
    }
done:
    PyMem_Free(bounds);
    Py_XDECREF(keep);
    PyMem_Free(sent);
    PyMem_Free(failed);
    return out;
}

/* --- take_batch: the common case of SctpTransport._take_all ------------------------ */

#define TAKE_NOTIFICATION 0x8000 /* Linux SCTP MSG_NOTIFICATION */
#define TAKE_CELLS 16            /* traffic cells one call keeps at hand */

typedef struct {
    long assoc, ppid, stream;
    PyObject *cell; /* a strong reference to counts[(assoc, 0, ppid, stream)] */
    Py_ssize_t messages, bytes;
} TakeCell;

/* The [messages, bytes] cell of (assoc, IN, ppid, stream): from the call's table, else
 * from `counts`, else made by `new_cell(key)` (Traffic.cell). NULL on an error, or when
 * the table is full (the read then goes the Python way). */
static TakeCell *take_cell(TakeCell *cells, int *used, PyObject *counts, PyObject *new_cell,
                           long assoc, long ppid, long stream)
{
    for (int k = 0; k < *used; k++)
        if (cells[k].assoc == assoc && cells[k].ppid == ppid && cells[k].stream == stream)
            return &cells[k];
    if (*used == TAKE_CELLS)
        return NULL;
    PyObject *key = Py_BuildValue("(lill)", assoc, 0, ppid, stream);
    if (key == NULL)
        return NULL;
    PyObject *cell = PyDict_GetItemWithError(counts, key);
    if (cell != NULL)
        Py_INCREF(cell);
    else if (!PyErr_Occurred())
        cell = PyObject_CallOneArg(new_cell, key);
    Py_DECREF(key);
    if (cell == NULL)
        return NULL;
    if (!PyList_Check(cell) || PyList_GET_SIZE(cell) != 2) {
        Py_DECREF(cell);
        PyErr_SetString(PyExc_TypeError, "take_batch: a traffic cell is not [messages, bytes]");
        return NULL;
    }
    TakeCell *c = &cells[(*used)++];
    *c = (TakeCell){assoc, ppid, stream, cell, 0, 0};
    return c;
}

/* cell[i] += add, for the cell's two ints. */
static int add_to(PyObject *cell, Py_ssize_t i, Py_ssize_t add)
{
    Py_ssize_t was = PyLong_AsSsize_t(PyList_GET_ITEM(cell, i));
    if (was == -1 && PyErr_Occurred())
        return -1;
    PyObject *sum = PyLong_FromSsize_t(was + add);
    if (sum == NULL)
        return -1;
    PyList_SetItem(cell, i, sum);
    return 0;
}

/* Add what the call counted to the cells and let go of them; -1 if that failed. */
static int take_cells_close(TakeCell *cells, int used)
{
    int rc = 0;
    for (int k = 0; k < used; k++) {
        if (rc == 0 && cells[k].messages &&
            (add_to(cells[k].cell, 0, cells[k].messages) < 0 ||
             add_to(cells[k].cell, 1, cells[k].bytes) < 0))
            rc = -1;
        Py_DECREF(cells[k].cell);
    }
    return rc;
}

/*
 * take_batch(batch, start, direct, rx, counts, new_cell, now) -> (stop, taken, refused)
 *
 * What SctpTransport._take/_take_message do for each read of `batch` from `start` on, for
 * as long as each is a whole message with its SCTP_RCVINFO (not a notification, not a
 * piece) and nothing waits in `rx`: count it in `counts` and hand (assoc_id, ppid, data,
 * now) to `direct`. `stop` is the first read not handed over; if `refused`, that read was
 * counted and `direct` declined it (the caller queues it). A `direct` that leaves
 * something in `rx` (deferred work) stops the call after its read: what follows queues.
 * The counts are added to their cells at the end of the call: nothing `direct` does reads
 * them (scrapes do, and the fold when an association's end is read, both outside it).
 * Why: the Python of it cost about 0.7-1 us a read on the host, as much as the relay's
 * own work on a request (`python -m sigmw.benchkit.take` prints both).
 */
static PyObject *take_batch(PyObject *self, PyObject *args)
{
    PyObject *batch, *direct, *rx, *counts, *new_cell, *now;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "OnOOO!OO!", &batch, &start, &direct, &rx, &PyDict_Type,
                          &counts, &new_cell, &PyFloat_Type, &now))
        return NULL;
    PyObject *fast = PySequence_Fast(batch, "take_batch: batch must be a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), i = start < 0 ? 0 : start, taken = 0;
    int refused = 0, failed = 0, used = 0;
    TakeCell cells[TAKE_CELLS];
    for (; i < n; i++) {
        PyObject *read = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(read) || PyTuple_GET_SIZE(read) != 4)
            break;
        PyObject *data = PyTuple_GET_ITEM(read, 0), *rcv = PyTuple_GET_ITEM(read, 2);
        long flags = PyLong_AsLong(PyTuple_GET_ITEM(read, 1));
        if (flags == -1 && PyErr_Occurred()) {
            failed = 1;
            break;
        }
        if ((flags & (MSG_EOR | TAKE_NOTIFICATION)) != MSG_EOR || !PyBytes_Check(data) ||
            !PyBytes_Check(rcv) || PyBytes_GET_SIZE(rcv) < RCVINFO_SIZE)
            break; /* a notification, a piece, no SCTP_RCVINFO: the Python way */
        const unsigned char *r = (const unsigned char *)PyBytes_AS_STRING(rcv);
        uint16_t stream;
        uint32_t ppid_net;
        int32_t assoc;
        memcpy(&stream, r, 2); /* struct sctp_rcvinfo, host order but the PPID */
        memcpy(&ppid_net, r + 8, 4);
        memcpy(&assoc, r + 24, 4);
        long ppid = (long)ntohl(ppid_net);
        TakeCell *cell = take_cell(cells, &used, counts, new_cell, assoc, ppid, stream);
        if (cell == NULL) {
            failed = PyErr_Occurred() != NULL;
            break;
        }
        cell->messages++;
        cell->bytes += PyBytes_GET_SIZE(data);
        PyObject *a = PyLong_FromLong(assoc), *p = PyLong_FromLong(ppid);
        PyObject *res = NULL;
        if (a != NULL && p != NULL) {
            PyObject *call[4] = {a, p, data, now};
            res = PyObject_Vectorcall(direct, call, 4, NULL);
        }
        Py_XDECREF(a);
        Py_XDECREF(p);
        int yes = res != NULL ? PyObject_IsTrue(res) : -1;
        Py_XDECREF(res);
        if (yes < 0) { /* the exception goes up as from the Python way */
            failed = 1;
            break;
        }
        if (!yes) {
            refused = 1;
            break;
        }
        taken++;
        Py_ssize_t waiting = PyObject_Length(rx);
        if (waiting != 0) { /* deferred work (or an error): what follows queues behind it */
            failed = waiting < 0;
            i++;
            break;
        }
    }
    Py_DECREF(fast);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* the cells are written back in any case */
    int closed = take_cells_close(cells, used);
    if (type != NULL) {
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (closed < 0 || failed)
        return NULL;
    return Py_BuildValue("(nnO)", i, taken, refused ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"recv_batch", recv_batch, METH_VARARGS,
     "recv_batch(fd, max_messages, slot_size) -> [(data, msg_flags, rcvinfo | None, "
     "sockaddr)]: one non-blocking recvmmsg; [] when nothing is waiting."},
    {"send_bursts", send_bursts, METH_VARARGS,
     "send_bursts(fd, bursts, more_flags) -> (sent, None | [(burst, sent_of_it, errno)]): "
     "each burst a list of (data, cmsgs) for one association; all but each burst's last "
     "go with more_flags (MSG_MORE; at most 32 in a row), each followed by one without, "
     "by non-blocking sendmmsg, one burst after the other. "
     "A burst stops at its first failure (EAGAIN or an error), the others go on."},
    {"take_batch", take_batch, METH_VARARGS,
     "take_batch(batch, start, direct, rx, counts, new_cell, now) -> (stop, taken, refused): "
     "SctpTransport._take_all's common case (whole messages with SCTP_RCVINFO while rx is "
     "empty): count each in counts and hand it to direct(assoc_id, ppid, data, now)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sigmw.io._mmsg",
    "Batched SCTP receive and send (recvmmsg, sendmmsg) for SctpTransport.", -1, methods,
};

PyMODINIT_FUNC PyInit__mmsg(void) { return PyModule_Create(&module); }
