/*
 * The SCTP shedder in bulk (part of sigmw.diameter._speedups): what io.diameter's
 * sctp_shedder does for a read past the shed bound (an application request answered
 * 3004 at once), for many reads a call with no Python per message.
 *
 *   shed_sctp: on reads already made (SctpTransport's (data, flags, rcvinfo, source)
 *              tuples), from an index on;
 *   recv_shed: reads a batch itself (recvmmsg), decides how many of a full batch to keep
 *              under the bound as SctpTransport._room does, and sheds the rest straight
 *              from its buffers: a read it sheds never becomes a Python object. Only the
 *              reads kept, and those from the first it cannot shed on, come back as tuples.
 *
 * Both queue their 3004s on a ShedSender (_shedsend.c), whose thread sends them.
 * shed_tcp is the TCP shedder's loop (DiameterCore.shed_requests): its 3004s go back to
 * the endpoint, which corks them on the connection.
 * Why: shedding must cost a fraction of relaying or the excess eats the goodput; per
 * message the Python of it cost about half a relayed pair, and once that was C, making
 * the read's tuple and handing it around was most of what was left (docs/benchmark.md).
 */
#include "_speedups.h" /* first: Python.h sets _GNU_SOURCE, which recvmmsg needs */
#include "../io/_recvbatch.h"

#include <errno.h>
#include <string.h>

#define MSG_EOR_FLAG 0x80            /* Linux MSG_EOR */
#define MSG_NOTIFICATION_FLAG 0x8000 /* Linux SCTP MSG_NOTIFICATION */
#define RCVINFO_LEN RECVBATCH_RCVINFO_LEN
#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif
#define DIAMETER_PPID 46
#define TOO_BUSY 3004

static PyObject *s_local, *too_busy, *ppid_46, *dir_in, *dir_out;

/* counts[key] is a [messages, bytes] list (io.traffic.Traffic.counts): add to it. */
int sigmw_count_cell(PyObject *cell, Py_ssize_t messages, Py_ssize_t size)
{
    Py_ssize_t was_n = PyLong_AsSsize_t(PyList_GET_ITEM(cell, 0));
    Py_ssize_t was_b = PyLong_AsSsize_t(PyList_GET_ITEM(cell, 1));
    if ((was_n == -1 || was_b == -1) && PyErr_Occurred())
        return -1;
    PyObject *n = PyLong_FromSsize_t(was_n + messages);
    PyObject *b = PyLong_FromSsize_t(was_b + size);
    if (n == NULL || b == NULL) {
        Py_XDECREF(n);
        Py_XDECREF(b);
        return -1;
    }
    PyList_SetItem(cell, 0, n);
    PyList_SetItem(cell, 1, b);
    return 0;
}

/* The [messages, bytes] cell of (assoc, direction, ppid, stream), a new reference; NULL
 * if none (a Python error only if the lookup failed). */
static PyObject *cell_of(PyObject *counts, long assoc, PyObject *dir, long ppid, long stream)
{
    PyObject *key = Py_BuildValue("(lOll)", assoc, dir, ppid, stream);
    PyObject *cell = key ? PyDict_GetItemWithError(counts, key) : NULL;
    Py_XDECREF(key);
    return cell != NULL && PyList_Check(cell) && PyList_GET_SIZE(cell) == 2 ? Py_NewRef(cell)
                                                                             : NULL;
}

/*
 * What the reads of one shed_sctp call share, looked up once a call rather than once a
 * read (per read, the dict lookups, key tuples and new ints were most of its cost); the
 * counts are added at the end of the call. A table that is full stops the call like a
 * key not seen yet: the read goes to the Python path, the next call starts afresh.
 */
#define SHED_SLOTS 64

typedef struct {
    long assoc, outbound;
} ShedAssoc;

typedef struct {
    long assoc, a, b; /* in: (ppid, stream); out: (stream, 0); answers: (command, 0) */
    PyObject *cell;   /* traffic cell, or for answers the Relay.answers key */
    Py_ssize_t messages, bytes;
    ShedControl ctl; /* out: the cached ancillary data, as sendmsg takes it */
    uint16_t ctl_len;
} ShedCount;

typedef struct {
    int assocs, ins, outs, commands;
    ShedAssoc assoc[SHED_SLOTS];
    ShedCount in[SHED_SLOTS], out[SHED_SLOTS], command[SHED_SLOTS];
} ShedCache;

static ShedCount *find_count(ShedCount *table, int used, long assoc, long a, long b)
{
    for (int k = 0; k < used; k++)
        if (table[k].assoc == assoc && table[k].a == a && table[k].b == b)
            return &table[k];
    return NULL;
}

/* The association's entry, looked up in `known` (assoc id -> outbound streams); missing
 * there, asked of `learn` (a callable, or NULL: none) and stored in `known`. NULL when it
 * is not an open peer's (fewer than one stream), the table is full or a call failed. */
static ShedAssoc *shed_assoc(ShedCache *c, PyObject *known, PyObject *learn, long assoc)
{
    for (int k = 0; k < c->assocs; k++)
        if (c->assoc[k].assoc == assoc)
            return &c->assoc[k];
    if (c->assocs == SHED_SLOTS)
        return NULL;
    PyObject *key = PyLong_FromLong(assoc);
    PyObject *outbound = key ? PyDict_GetItemWithError(known, key) : NULL;
    Py_XINCREF(outbound);
    if (outbound == NULL && key != NULL && learn != NULL && !PyErr_Occurred()) {
        outbound = PyObject_CallOneArg(learn, key);
        if (outbound != NULL && PyDict_SetItem(known, key, outbound) < 0)
            Py_CLEAR(outbound);
    }
    Py_XDECREF(key);
    long streams = outbound ? PyLong_AsLong(outbound) : -1;
    Py_XDECREF(outbound);
    if (streams < 1)
        return NULL;
    ShedAssoc *s = &c->assoc[c->assocs++];
    *s = (ShedAssoc){assoc, streams};
    return s;
}

static ShedCount *shed_in(ShedCache *c, PyObject *counts, long assoc, long ppid, long stream)
{
    ShedCount *s = find_count(c->in, c->ins, assoc, ppid, stream);
    if (s != NULL || c->ins == SHED_SLOTS)
        return s;
    PyObject *cell = cell_of(counts, assoc, dir_in, ppid, stream);
    if (cell == NULL)
        return NULL;
    s = &c->in[c->ins++];
    *s = (ShedCount){assoc, ppid, stream, cell, 0, 0};
    return s;
}

/* The ancillary data `anc` ([(level, type, bytes), ...], as socket.sendmsg takes it) laid
 * out in `ctl` as sendmsg(2) takes it; its length, or -1 if it is not that or too long.
 * (sigmw/io/_mmsg.c lays out its sends the same way, raising on what this one declines;
 * this one does it once a call, into the queued 3004s.) */
static int control_of(PyObject *anc, ShedControl *ctl)
{
    if (!PyList_Check(anc))
        return -1;
    size_t used = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(anc); i++) {
        PyObject *item = PyList_GET_ITEM(anc, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3 ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 2)))
            return -1;
        int level = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        int type = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        size_t size = (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 2));
        if (PyErr_Occurred() || used + CMSG_SPACE(size) > SHED_CONTROL_MAX) {
            PyErr_Clear();
            return -1;
        }
        struct cmsghdr *c = (struct cmsghdr *)(ctl->bytes + used);
        memset(c, 0, CMSG_SPACE(size));
        c->cmsg_len = CMSG_LEN(size);
        c->cmsg_level = level;
        c->cmsg_type = type;
        memcpy(CMSG_DATA(c), PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 2)), size);
        used += CMSG_SPACE(size);
    }
    return (int)used;
}

static ShedCount *shed_out(ShedCache *c, PyObject *counts, PyObject *cmsgs, long assoc, long stream)
{
    ShedCount *s = find_count(c->out, c->outs, assoc, stream, 0);
    if (s != NULL || c->outs == SHED_SLOTS)
        return s;
    PyObject *key = Py_BuildValue("(llO)", assoc, stream, ppid_46);
    PyObject *anc = key ? PyDict_GetItemWithError(cmsgs, key) : NULL;
    Py_XDECREF(key);
    s = &c->out[c->outs];
    int ctl_len = anc ? control_of(anc, &s->ctl) : -1;
    PyObject *cell = ctl_len >= 0 ? cell_of(counts, assoc, dir_out, DIAMETER_PPID, stream) : NULL;
    if (cell == NULL)
        return NULL;
    c->outs++;
    s->assoc = assoc, s->a = stream, s->b = 0, s->cell = cell;
    s->messages = s->bytes = 0;
    s->ctl_len = (uint16_t)ctl_len;
    return s;
}

static ShedCount *shed_command(ShedCache *c, PyObject *answers, long command)
{
    ShedCount *s = find_count(c->command, c->commands, 0, command, 0);
    if (s != NULL || c->commands == SHED_SLOTS)
        return s;
    PyObject *key = Py_BuildValue("(lOO)", command, too_busy, s_local);
    PyObject *count = key ? PyDict_GetItemWithError(answers, key) : NULL;
    if (count == NULL || !PyLong_Check(count)) {
        Py_XDECREF(key);
        return NULL;
    }
    s = &c->command[c->commands++];
    *s = (ShedCount){0, command, 0, key, 0, 0};
    return s;
}

/* Add what the call counted and let go of what it held; -1 if an update failed. */
static int shed_finish(ShedCache *c, PyObject *answers)
{
    int rc = 0;
    ShedCount *tables[] = {c->in, c->out};
    int used[] = {c->ins, c->outs};
    for (int t = 0; t < 2; t++) {
        for (int k = 0; k < used[t]; k++) {
            ShedCount *s = &tables[t][k];
            if (s->messages && rc == 0 && sigmw_count_cell(s->cell, s->messages, s->bytes) < 0)
                rc = -1;
            Py_DECREF(s->cell);
        }
    }
    for (int k = 0; k < c->commands; k++) {
        ShedCount *s = &c->command[k];
        if (s->messages && rc == 0) {
            PyObject *count = PyDict_GetItemWithError(answers, s->cell);
            PyObject *more =
                count ? PyLong_FromSsize_t(PyLong_AsSsize_t(count) + s->messages) : NULL;
            if (more == NULL || PyDict_SetItem(answers, s->cell, more) < 0)
                rc = -1;
            Py_XDECREF(more);
        }
        Py_DECREF(s->cell);
    }
    return rc;
}

/* One call's work: its cache, the 3004s it made and what each counted out. */
typedef struct {
    ShedCache cache;
    PyObject *known, *learn, *cmsgs, *counts, *answers;
    const char *tail;
    Py_ssize_t tail_len, taken, room;
    ShedMsg **msgs;
    ShedCount **outs; /* each message's out cell */
    Py_ssize_t *sizes;
    unsigned char *accepted;
} ShedRun;

static int shed_open(ShedRun *run, Py_ssize_t room)
{
    run->taken = 0;
    run->room = room;
    run->msgs = PyMem_Calloc((size_t)room, sizeof *run->msgs);
    run->outs = PyMem_Calloc((size_t)room, sizeof *run->outs);
    run->sizes = PyMem_Calloc((size_t)room, sizeof *run->sizes);
    run->accepted = PyMem_Calloc((size_t)room, 1);
    memset(&run->cache, 0, sizeof run->cache);
    if (run->msgs && run->outs && run->sizes && run->accepted)
        return 0;
    PyMem_Free(run->msgs), PyMem_Free(run->outs), PyMem_Free(run->sizes);
    PyMem_Free(run->accepted);
    PyErr_NoMemory();
    return -1;
}

/*
 * One read: 1 if it was a whole Diameter application request on an open peer's
 * association, now answered (its 3004 made and counted; queued by shed_close), else 0
 * with nothing touched (-1 only if a lookup failed or memory ran out). `rcv` is its
 * struct sctp_rcvinfo.
 */
static int shed_one(ShedRun *run, const unsigned char *d, Py_ssize_t len, long flags,
                    const unsigned char *rcv)
{
    if ((flags & (MSG_EOR_FLAG | MSG_NOTIFICATION_FLAG)) != MSG_EOR_FLAG || rcv == NULL ||
        run->taken >= run->room)
        return 0;
    uint16_t stream_in;
    uint32_t ppid_raw;
    int32_t assoc_id;
    memcpy(&stream_in, rcv, 2); /* host order, as the kernel fills struct sctp_rcvinfo */
    memcpy(&ppid_raw, rcv + 8, 4);
    memcpy(&assoc_id, rcv + 24, 4);
    uint32_t ppid = be32((const unsigned char *)&ppid_raw); /* the PPID is in network order */
    if (ppid != 0 && ppid != DIAMETER_PPID)
        return 0;
    if (len < HEADER_LEN || !(d[4] & FLAG_REQUEST) ||
        (d[5] == 0 && d[6] == 1 && (d[7] == 1 || d[7] == 24 || d[7] == 26)))
        return 0; /* not an application request: 257 CER, 280 DWR, 282 DPR go the usual way */
    Py_ssize_t slen = len >= 28 && be32(d + 20) == 263 ? (Py_ssize_t)(be32(d + 24) & 0xFFFFFF) : 0;
    if (!(8 < slen && slen <= len - 20))
        return 0; /* no leading Session-Id: the spreader picks the stream, in Python */

    ShedCache *cache = &run->cache;
    ShedAssoc *assoc = shed_assoc(cache, run->known, run->learn, assoc_id);
    if (assoc == NULL)
        return PyErr_Occurred() ? -1 : 0;
    uint32_t crc = sigmw_crc32(d + 28, slen - 8);
    long outbound = assoc->outbound;
    long stream = outbound > 1 ? (long)(crc % (uint32_t)(outbound - 1)) + 1 : 0;
    long command = (long)d[5] << 16 | (long)d[6] << 8 | d[7];
    ShedCount *out = shed_out(cache, run->counts, run->cmsgs, assoc_id, stream);
    ShedCount *count = out ? shed_command(cache, run->answers, command) : NULL;
    ShedCount *in = count ? shed_in(cache, run->counts, assoc_id, (long)ppid, stream_in) : NULL;
    if (in == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_ssize_t size = sigmw_busy_answer_size(d, len, run->tail_len);
    ShedMsg *m = sigmw_shed_msg_new(assoc_id, (size_t)size, &out->ctl, out->ctl_len);
    if (m == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Taken: from here on, what the shedder's Python does for this read. */
    sigmw_busy_answer_write(d, size, run->tail, run->tail_len, m->data);
    Py_ssize_t k = run->taken++;
    run->msgs[k] = m;
    run->outs[k] = out;
    run->sizes[k] = size;
    in->messages++, in->bytes += len;
    out->messages++, out->bytes += size;
    count->messages++;
    return 1;
}

/* Queue the call's 3004s on `sender`, add up its counts and free it. How many found their
 * association's queue full (not queued, nor counted out) in *dropped; -1 on an error. */
static int shed_close(ShedRun *run, PyObject *sender, Py_ssize_t *dropped)
{
    *dropped = 0;
    if (run->taken) {
        /* The push takes the messages (one queued may be sent, and freed, at once): what
         * a dropped one counted out is taken back by the sizes kept here. */
        sigmw_sender_push(sender, run->msgs, run->taken, run->accepted);
        for (Py_ssize_t k = 0; k < run->taken; k++) {
            if (!run->accepted[k]) {
                run->outs[k]->messages--, run->outs[k]->bytes -= run->sizes[k];
                (*dropped)++;
            }
        }
    }
    int rc = shed_finish(&run->cache, run->answers);
    PyMem_Free(run->msgs), PyMem_Free(run->outs), PyMem_Free(run->sizes);
    PyMem_Free(run->accepted);
    return rc;
}

/*
 * shed_sctp(reads, start, known, cmsgs, counts, sender, answers, tail)
 *     -> (stop, taken, dropped)
 *
 * From reads[start] on, each whole Diameter application request on an association of
 * `known` (assoc id -> outbound streams of an open peer) gets its 3004 (wire.busy_answer
 * with `tail`) queued on `sender` (a ShedSender, whose thread sends it) for its session's
 * stream, with the endpoint's cached ancillary data `cmsgs[(assoc, stream, 46)]`; it is
 * counted in and out in `counts` (the endpoint's Traffic.counts) and in `answers`
 * (Relay.answers). `dropped` of them found their association's queue full and were not
 * queued (nor counted out). It stops at the first read it cannot take whole that way
 * (anything else, a sessionless request, an association not in `known`, a key not
 * counted or cached yet) and returns its index, for the Python path to take; nothing of
 * that read is touched.
 */
static PyObject *shed_sctp(PyObject *self, PyObject *args)
{
    PyObject *reads, *sender, *tail;
    ShedRun run = {0};
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "O!nO!O!O!O!O!S", &PyList_Type, &reads, &i, &PyDict_Type,
                          &run.known, &PyDict_Type, &run.cmsgs, &PyDict_Type, &run.counts,
                          &ShedSenderType, &sender, &PyDict_Type, &run.answers, &tail))
        return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "shed_sctp: start must not be negative");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(reads);
    run.tail = PyBytes_AS_STRING(tail), run.tail_len = PyBytes_GET_SIZE(tail);
    if (shed_open(&run, i < n ? n - i : 1) < 0)
        return NULL;
    for (; i < n; i++) {
        PyObject *read = PyList_GET_ITEM(reads, i);
        if (!PyTuple_Check(read) || PyTuple_GET_SIZE(read) != 4)
            break;
        PyObject *data = PyTuple_GET_ITEM(read, 0), *rcv = PyTuple_GET_ITEM(read, 2);
        long flags = PyLong_AsLong(PyTuple_GET_ITEM(read, 1));
        if ((flags == -1 && PyErr_Occurred()) || !PyBytes_Check(data) || !PyBytes_Check(rcv) ||
            PyBytes_GET_SIZE(rcv) < RCVINFO_LEN)
            break;
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
        if (shed_one(&run, d, PyBytes_GET_SIZE(data), flags,
                     (const unsigned char *)PyBytes_AS_STRING(rcv)) != 1)
            break;
    }
    /* A read that stopped the call touched nothing; only a failed lookup raises. */
    int failed = PyErr_Occurred() != NULL;
    Py_ssize_t dropped;
    if (shed_close(&run, sender, &dropped) < 0)
        failed = 1;
    if (failed)
        return NULL;
    return Py_BuildValue("(nnn)", i, run.taken, dropped);
}

/* --- shed_tcp ------------------------------------------------------------------------ */

/* A Diameter application request: a header, the R bit, not CER, DWR or DPR (257, 280,
 * 282: management goes the usual way). */
static int is_app_request(const unsigned char *d, Py_ssize_t len)
{
    return len >= HEADER_LEN && (d[4] & FLAG_REQUEST) &&
           !(d[5] == 0 && d[6] == 1 && (d[7] == 1 || d[7] == 24 || d[7] == 26));
}

/*
 * shed_tcp(messages, start, answers, tail, replies, kept) -> (stop, taken)
 *
 * DiameterCore.shed_requests' loop for a batch framed off one TCP connection, from
 * messages[start] on: each application request gets its 3004 (wire.busy_answer with
 * `tail`) appended to `replies` and counted in `answers` (Relay.answers); anything else
 * is appended to `kept`, in order. `taken` requests were answered. It stops at the first
 * request whose (command, 3004, "local") count is not in `answers` yet and returns its
 * index, for Relay.busy_answer to count (it bounds the labels); nothing of it is touched.
 * Why: in Python this cost about 1.8 us a message on the host, more than half of a pair
 * relayed by Direct, and the excess then ate the goodput.
 */
static PyObject *shed_tcp(PyObject *self, PyObject *args)
{
    PyObject *messages, *answers, *tail, *replies, *kept;
    Py_ssize_t i, taken = 0;
    if (!PyArg_ParseTuple(args, "O!nO!SO!O!", &PyList_Type, &messages, &i, &PyDict_Type,
                          &answers, &tail, &PyList_Type, &replies, &PyList_Type, &kept))
        return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "shed_tcp: start must not be negative");
        return NULL;
    }
    ShedCache *cache = PyMem_Calloc(1, sizeof *cache); /* only its commands are used */
    if (cache == NULL)
        return PyErr_NoMemory();
    const char *tail_data = PyBytes_AS_STRING(tail);
    Py_ssize_t tail_len = PyBytes_GET_SIZE(tail);
    int failed = 0;
    for (; i < PyList_GET_SIZE(messages); i++) {
        PyObject *data = PyList_GET_ITEM(messages, i);
        if (!PyBytes_Check(data))
            break;
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
        Py_ssize_t len = PyBytes_GET_SIZE(data);
        if (!is_app_request(d, len)) {
            if (PyList_Append(kept, data) < 0) {
                failed = 1;
                break;
            }
            continue;
        }
        long command = (long)d[5] << 16 | (long)d[6] << 8 | d[7];
        ShedCount *count = shed_command(cache, answers, command);
        if (count == NULL) {
            failed = PyErr_Occurred() != NULL;
            break; /* a command not counted yet (or a full table): the Python path */
        }
        Py_ssize_t size = sigmw_busy_answer_size(d, len, tail_len);
        PyObject *reply = PyBytes_FromStringAndSize(NULL, size);
        if (reply == NULL) {
            failed = 1;
            break;
        }
        sigmw_busy_answer_write(d, size, tail_data, tail_len,
                                (unsigned char *)PyBytes_AS_STRING(reply));
        int appended = PyList_Append(replies, reply);
        Py_DECREF(reply);
        if (appended < 0) {
            failed = 1;
            break;
        }
        count->messages++;
        taken++;
    }
    if (shed_finish(cache, answers) < 0)
        failed = 1;
    PyMem_Free(cache);
    if (failed)
        return NULL;
    return Py_BuildValue("(nn)", i, taken);
}

/* --- recv_shed ----------------------------------------------------------------------- */

/* The batch: static (_recvbatch.h), as the GIL is held throughout and a batch is done
 * with before the next call. sigmw.io._mmsg's recv_batch reads the same way. */
static RecvBatch batch;

/*
 * SctpTransport._room for a full batch of `got` reads: how many to handle as usual,
 * counting what waits (`queued` here, and what the kernel still holds, from SO_MEMINFO
 * and the batch's mean size) against `backlog` messages and `share` of the receive
 * buffer. All of them when the kernel will not tell.
 */
static int room_of(int fd, int got, Py_ssize_t queued, Py_ssize_t backlog, double share,
                   Py_ssize_t overhead)
{
    uint32_t meminfo[9] = {0};
    socklen_t len = sizeof meminfo;
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) < 0 || len < 2 * sizeof(uint32_t))
        return got;
    Py_ssize_t truesize = (Py_ssize_t)got * overhead;
    for (int i = 0; i < got; i++)
        truesize += recvbatch_len(&batch, i);
    if (truesize <= 0)
        return got;
    Py_ssize_t unread = meminfo[0], rcvbuf = meminfo[1];
    Py_ssize_t waiting = queued + unread * got / truesize;
    Py_ssize_t fits = (Py_ssize_t)((double)rcvbuf * share) * got / truesize;
    Py_ssize_t bound = backlog < fits ? backlog : fits;
    Py_ssize_t keep = bound - waiting < got ? bound - waiting : got;
    return keep > 0 ? (int)keep : 0;
}

/*
 * recv_shed(fd, want, slot, room, known, learn, cmsgs, counts, sender, answers, tail)
 *     -> (reads, keep, taken, dropped)
 *
 * One recvmmsg of up to `want` reads of up to `slot` bytes. A full batch is split as
 * SctpTransport._room would, with room = (queued, backlog, share, skb overhead); the
 * reads past `keep` are shed as shed_sctp sheds them, with `learn(assoc)` asked for the
 * outbound streams of an association not in `known` (0: not an open peer's). `known`
 * None: shed nothing here (the transport has messages queued or being reassembled).
 * `reads` are the reads kept, then from the first read past `keep` it did not shed on,
 * as tuples; `keep` of them are the reads under the bound. On a recvmmsg error with
 * nothing read, OSError.
 */
static PyObject *recv_shed(PyObject *self, PyObject *args)
{
    int fd, want;
    Py_ssize_t size, queued, backlog, overhead;
    double share;
    PyObject *known, *sender, *tail;
    ShedRun run = {0};
    if (!PyArg_ParseTuple(args, "iin(nndn)OOO!O!O!O!S", &fd, &want, &size, &queued, &backlog,
                          &share, &overhead, &known, &run.learn, &PyDict_Type, &run.cmsgs,
                          &PyDict_Type, &run.counts, &ShedSenderType, &sender, &PyDict_Type,
                          &run.answers, &tail))
        return NULL;
    if (want < 1 || want > RECVBATCH_MAX || size < 1 || size > RECVBATCH_MAX_SLOT ||
        overhead < 0) {
        PyErr_Format(PyExc_ValueError, "recv_shed: 1..%d messages of 1..%d bytes",
                     RECVBATCH_MAX, RECVBATCH_MAX_SLOT);
        return NULL;
    }
    if (known != Py_None && !PyDict_Check(known)) {
        PyErr_SetString(PyExc_TypeError, "recv_shed: known is a dict or None");
        return NULL;
    }
    if (!PyCallable_Check(run.learn)) {
        PyErr_SetString(PyExc_TypeError, "recv_shed: learn is callable");
        return NULL;
    }
    int got = recvbatch_read(&batch, fd, want, size);
    if (got < 0)
        return NULL;
    int keep = got == want ? room_of(fd, got, queued, backlog, share, overhead) : got;
    int stop = keep; /* the first read past keep not shed here */
    Py_ssize_t dropped = 0;
    /* The reads are out of the socket now: whatever fails below, short of making the
     * tuples, hands them to the Python path rather than lose them. */
    if (keep < got && known != Py_None) {
        run.known = known;
        run.tail = PyBytes_AS_STRING(tail), run.tail_len = PyBytes_GET_SIZE(tail);
        if (shed_open(&run, got - keep) == 0) {
            int rc = 1;
            while (stop < got && rc == 1) {
                rc = shed_one(&run, recvbatch_data(&batch, stop), recvbatch_len(&batch, stop),
                              recvbatch_flags(&batch, stop), recvbatch_rcvinfo(&batch, stop));
                stop += rc == 1;
            }
            /* A failed lookup leaves that read and the rest to the Python path, which
             * raises or takes them; what was shed is queued either way. */
            PyErr_Clear();
            if (shed_close(&run, sender, &dropped) < 0)
                PyErr_Clear(); /* out of memory adding up counts: those counts are lost */
        }
        PyErr_Clear();
    }
    PyObject *reads = PyList_New(keep + (got - stop));
    if (reads == NULL)
        return NULL;
    for (int i = 0, k = 0; i < got; i++) {
        if (i >= keep && i < stop)
            continue;
        PyObject *item = recvbatch_tuple(&batch, i);
        if (item == NULL) {
            Py_DECREF(reads);
            return NULL;
        }
        PyList_SET_ITEM(reads, k++, item);
    }
    return Py_BuildValue("(Ninn)", reads, keep, run.taken, dropped);
}

static PyMethodDef functions[] = {
    {"shed_sctp", shed_sctp, METH_VARARGS,
     "shed_sctp(reads, start, known, cmsgs, counts, sender, answers, tail)"
     " -> (stop, taken, dropped)."},
    {"shed_tcp", shed_tcp, METH_VARARGS,
     "shed_tcp(messages, start, answers, tail, replies, kept) -> (stop, taken)."},
    {"recv_shed", recv_shed, METH_VARARGS,
     "recv_shed(fd, want, slot, room, known, learn, cmsgs, counts, sender, answers, tail)"
     " -> (reads, keep, taken, dropped)."},
    {NULL},
};

int sigmw_shed_init(PyObject *module)
{
    s_local = PyUnicode_InternFromString("local");
    too_busy = PyLong_FromLong(TOO_BUSY);
    ppid_46 = PyLong_FromLong(DIAMETER_PPID);
    dir_in = PyLong_FromLong(0); /* io.traffic.IN, OUT */
    dir_out = PyLong_FromLong(1);
    if (!s_local || !too_busy || !ppid_46 || !dir_in || !dir_out)
        return -1;
    if (PyType_Ready(&ShedSenderType) < 0 ||
        PyModule_AddObjectRef(module, "ShedSender", (PyObject *)&ShedSenderType) < 0)
        return -1;
    return PyModule_AddFunctions(module, functions);
}
