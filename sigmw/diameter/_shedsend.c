/*
 * ShedSender: the SCTP bulk shedder's 3004s, sent by a thread of their own.
 *
 * Why: under overload the relay's one thread is the limit, and sending a 3004 (the SCTP
 * stack's work inside sendmmsg) cost it about as much as receiving the request. Here
 * shed_sctp (_hotpath.c) queues each 3004, built in C with its ancillary data, and a
 * thread that never touches a Python object (so never needs the GIL) sends them on
 * another CPU: per association, in rounds of up to SENDER_CORKED messages, all but a
 * round's last with MSG_MORE so that the kernel bundles them.
 *
 * Bounds: at most `limit` 3004s wait for one association; past it shed_sctp drops them
 * and the relay counts them (a client that does not read its answers loses them, as
 * with send_nowait). When the kernel pushes back (EAGAIN) the thread waits for room
 * with poll; any other error (the association gone) drops that association's queue,
 * counted as failed.
 *
 * Order: one association's 3004s leave in the order they were shed. They may overtake
 * answers the relay's thread sends meanwhile, which Diameter allows (an answer is
 * matched to its request by hop-by-hop id, not by order).
 *
 * It sends on a duplicate of the socket's descriptor, closed when it stops: should its
 * owner close the socket first, the thread never writes to a number reused meanwhile.
 * A sender made with fd -1 starts no thread: `take` hands its queue back, for tests of
 * what shed_sctp queues.
 */
#define _GNU_SOURCE
#include "_speedups.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SENDER_CORKED 32 /* a round: all but its last with MSG_MORE (as _mmsg.c) */
#define SENDER_RETRY_MS 5
#ifndef MSG_MORE
#define MSG_MORE 0x8000
#endif

typedef struct Backlog {
    int32_t assoc;
    Py_ssize_t queued;    /* waiting, here or in `incoming`: what the bound counts */
    ShedMsg *head, *tail; /* the thread's queue (only the thread links it) */
} Backlog;

typedef struct {
    PyObject_HEAD
    int fd;
    Py_ssize_t limit;
    pthread_mutex_t lock;
    pthread_cond_t work; /* signalled: messages queued, or stop */
    pthread_cond_t idle; /* broadcast: nothing waits any more */
    pthread_t thread;
    int started, stop;
    ShedMsg *incoming, *incoming_tail;
    Backlog *backlogs;
    Py_ssize_t nbacklogs, cap, total;
    unsigned long long sent, failed; /* under `lock` */
} ShedSender;

static Backlog *backlog_of(ShedSender *s, int32_t assoc, int add)
{
    for (Py_ssize_t i = 0; i < s->nbacklogs; i++)
        if (s->backlogs[i].assoc == assoc)
            return &s->backlogs[i];
    if (!add)
        return NULL;
    if (s->nbacklogs == s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 16;
        Backlog *grown = realloc(s->backlogs, sizeof *grown * (size_t)cap);
        if (grown == NULL)
            return NULL;
        s->backlogs = grown;
        s->cap = cap;
    }
    Backlog *b = &s->backlogs[s->nbacklogs++];
    *b = (Backlog){assoc, 0, NULL, NULL};
    return b;
}

static void free_chain(ShedMsg *m)
{
    while (m != NULL) {
        ShedMsg *next = m->next;
        free(m);
        m = next;
    }
}

/* Under the lock: `done` messages of `b` are gone (sent or failed). */
static void settle(ShedSender *s, Backlog *b, Py_ssize_t done)
{
    b->queued -= done;
    s->total -= done;
    if (s->total == 0)
        pthread_cond_broadcast(&s->idle);
}

/* Move what shed_sctp queued onto each association's queue (under the lock). */
static void distribute(ShedSender *s)
{
    ShedMsg *m = s->incoming;
    s->incoming = s->incoming_tail = NULL;
    while (m != NULL) {
        ShedMsg *next = m->next;
        m->next = NULL;
        Backlog *b = backlog_of(s, m->assoc, 0); /* made by sigmw_sender_push */
        if (b->tail != NULL)
            b->tail->next = m;
        else
            b->head = m;
        b->tail = m;
        m = next;
    }
}

/* Send up to SENDER_CORKED messages from `m` on; how many left, and errno (0, EAGAIN or
 * the failure) of the first that did not. Called without the lock. */
static Py_ssize_t send_round(int fd, ShedMsg *m, int *error)
{
    struct mmsghdr headers[SENDER_CORKED];
    struct iovec iovs[SENDER_CORKED];
    int n = 0;
    for (; m != NULL && n < SENDER_CORKED; m = m->next, n++) {
        iovs[n] = (struct iovec){m->data, m->len};
        memset(&headers[n], 0, sizeof headers[n]);
        headers[n].msg_hdr.msg_iov = &iovs[n];
        headers[n].msg_hdr.msg_iovlen = 1;
        if (m->ctl_len) {
            headers[n].msg_hdr.msg_control = m->ctl.bytes;
            headers[n].msg_hdr.msg_controllen = m->ctl_len;
        }
    }
    /* The round's messages but its last with MSG_MORE, then the last without. */
    int parts[2][2] = {{0, n - 1}, {n - 1, n}};
    Py_ssize_t done = 0;
    *error = 0;
    for (int p = 0; p < 2; p++) {
        int at = parts[p][0], end = parts[p][1];
        while (at < end) {
            int flags = MSG_DONTWAIT | MSG_NOSIGNAL | (p == 0 ? MSG_MORE : 0);
            int k = sendmmsg(fd, headers + at, (unsigned int)(end - at), flags);
            if (k > 0) {
                at += k;
                done += k;
                continue;
            }
            if (k < 0 && errno == EINTR)
                continue;
            *error = k < 0 ? errno : EAGAIN;
            if (*error == EWOULDBLOCK)
                *error = EAGAIN;
            return done;
        }
    }
    return done;
}

/* One pass over the associations with something queued; how many messages left. Sets
 * *blocked when the kernel pushed back. Called and returns with the lock held. */
static Py_ssize_t send_pass(ShedSender *s, int *blocked)
{
    Py_ssize_t progress = 0;
    for (Py_ssize_t i = 0; i < s->nbacklogs && !s->stop; i++) {
        ShedMsg *first = s->backlogs[i].head;
        if (first == NULL)
            continue;
        int error;
        pthread_mutex_unlock(&s->lock);
        Py_ssize_t done = send_round(s->fd, first, &error);
        pthread_mutex_lock(&s->lock);
        Backlog *b = &s->backlogs[i]; /* the table may have grown meanwhile */
        for (Py_ssize_t k = 0; k < done; k++) {
            ShedMsg *m = b->head;
            b->head = m->next;
            free(m);
        }
        s->sent += (unsigned long long)done;
        Py_ssize_t gone = done;
        if (error == EAGAIN) {
            *blocked = 1;
        } else if (error != 0) { /* the association is gone: so is its queue */
            Py_ssize_t lost = 0;
            for (ShedMsg *m = b->head; m != NULL; m = m->next)
                lost++;
            free_chain(b->head);
            b->head = NULL;
            s->failed += (unsigned long long)lost;
            gone += lost;
        }
        if (b->head == NULL)
            b->tail = NULL;
        settle(s, b, gone);
        progress += done;
    }
    /* Forget associations with nothing waiting (ids are not reused soon, but many pass). */
    for (Py_ssize_t i = 0; i < s->nbacklogs;) {
        if (s->backlogs[i].queued == 0 && s->backlogs[i].head == NULL)
            s->backlogs[i] = s->backlogs[--s->nbacklogs];
        else
            i++;
    }
    return progress;
}

static int has_queue(ShedSender *s)
{
    for (Py_ssize_t i = 0; i < s->nbacklogs; i++)
        if (s->backlogs[i].head != NULL)
            return 1;
    return 0;
}

static void *sender_main(void *arg)
{
    ShedSender *s = arg;
    /* SCHED_BATCH: woken by the relay's thread for every batch it sheds, this thread
     * must not preempt it on waking (under CFS a thread that mostly sleeps would), but
     * take its fair share of the CPU like any other; in the bench VM the relay's thread
     * waited for its CPU 0.12-0.14 of the time without it, 0.08 with. */
    struct sched_param batch = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        distribute(s);
        if (!has_queue(s)) {
            pthread_cond_wait(&s->work, &s->lock);
            continue;
        }
        int blocked = 0;
        Py_ssize_t progress = send_pass(s, &blocked);
        if (blocked && s->incoming == NULL && !s->stop) {
            /* Wait for room (or a while, should the socket say writable while this
             * association still is not: nothing must spin). */
            pthread_mutex_unlock(&s->lock);
            struct pollfd pfd = {s->fd, POLLOUT, 0};
            if (poll(&pfd, 1, SENDER_RETRY_MS) > 0 && progress == 0) {
                struct timespec pause = {0, SENDER_RETRY_MS * 1000000L};
                nanosleep(&pause, NULL);
            }
            pthread_mutex_lock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* --- what shed_sctp calls ------------------------------------------------------------ */

ShedMsg *sigmw_shed_msg_new(int32_t assoc, size_t len, const ShedControl *ctl, uint16_t ctl_len)
{
    ShedMsg *m = malloc(sizeof *m + len);
    if (m == NULL)
        return NULL;
    m->next = NULL;
    m->assoc = assoc;
    m->len = (uint32_t)len;
    m->ctl_len = ctl_len;
    if (ctl_len)
        memcpy(m->ctl.bytes, ctl->bytes, ctl_len);
    return m;
}

/* Queue msgs[0..n) (taking them all: each is queued or, past its association's bound,
 * freed); accepted[i] says which. Returns -1 only if memory ran out, with nothing taken. */
int sigmw_sender_push(PyObject *sender, ShedMsg **msgs, Py_ssize_t n, unsigned char *accepted)
{
    ShedSender *s = (ShedSender *)sender;
    int rc = 0, queued = 0;
    pthread_mutex_lock(&s->lock);
    for (Py_ssize_t i = 0; i < n; i++) {
        Backlog *b = backlog_of(s, msgs[i]->assoc, 1);
        if (b == NULL) { /* no memory for the table: this and the rest are dropped */
            rc = -1;
            for (; i < n; i++) {
                accepted[i] = 0;
                free(msgs[i]);
            }
            break;
        }
        accepted[i] = b->queued < s->limit && !s->stop; /* none once stopped */
        if (!accepted[i]) {
            free(msgs[i]);
            continue;
        }
        b->queued++;
        s->total++;
        queued = 1;
        msgs[i]->next = NULL;
        if (s->incoming_tail != NULL)
            s->incoming_tail->next = msgs[i];
        else
            s->incoming = msgs[i];
        s->incoming_tail = msgs[i];
    }
    if (queued && !s->started && s->fd >= 0) {
        if (pthread_create(&s->thread, NULL, sender_main, s) == 0)
            s->started = 1;
        else
            rc = -1; /* queued, never sent: `stop` frees and counts them as failed */
    }
    if (queued)
        pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* --- the Python type ----------------------------------------------------------------- */

static int sender_init(ShedSender *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"fd", "limit", NULL};
    int fd;
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "in", names, &fd, &limit))
        return -1;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "ShedSender: already sending");
        return -1;
    }
    if (limit < 1) {
        PyErr_SetString(PyExc_ValueError, "ShedSender: limit must be at least 1");
        return -1;
    }
    if (fd >= 0 && (fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (self->fd >= 0)
        close(self->fd);
    self->fd = fd;
    self->limit = limit;
    return 0;
}

static PyObject *sender_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ShedSender *self = (ShedSender *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fd = -1;
    if (pthread_mutex_init(&self->lock, NULL) != 0 || pthread_cond_init(&self->work, NULL) != 0 ||
        pthread_cond_init(&self->idle, NULL) != 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

/* Stop the thread (after the round it is in), then free what was never sent. */
static void stop_thread(ShedSender *self)
{
    pthread_mutex_lock(&self->lock);
    self->stop = 1;
    pthread_cond_signal(&self->work);
    int started = self->started;
    self->started = 0;
    pthread_mutex_unlock(&self->lock);
    if (started) {
        Py_BEGIN_ALLOW_THREADS pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    pthread_mutex_lock(&self->lock);
    distribute(self);
    for (Py_ssize_t i = 0; i < self->nbacklogs; i++) {
        Backlog *b = &self->backlogs[i];
        free_chain(b->head);
        b->head = b->tail = NULL;
        self->failed += (unsigned long long)b->queued;
        b->queued = 0;
    }
    self->nbacklogs = 0;
    self->total = 0;
    if (self->fd >= 0)
        close(self->fd);
    self->fd = -1;
    pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->lock);
}

static void sender_dealloc(ShedSender *self)
{
    stop_thread(self);
    free(self->backlogs);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->work);
    pthread_cond_destroy(&self->idle);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *sender_stop(ShedSender *self, PyObject *unused)
{
    stop_thread(self);
    Py_RETURN_NONE;
}

/* drain(timeout) -> bool: wait (without the GIL) until nothing waits, up to timeout s. */
static PyObject *sender_drain(ShedSender *self, PyObject *arg)
{
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = until.tv_nsec + (long long)(timeout * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    int empty;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->lock);
    while (self->total > 0 && self->started &&
           pthread_cond_timedwait(&self->idle, &self->lock, &until) == 0) {
    }
    empty = self->total == 0;
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS return PyBool_FromLong(empty);
}

/* counts() -> (sent, failed, waiting): totals since the sender was made. */
static PyObject *sender_counts(ShedSender *self, PyObject *unused)
{
    pthread_mutex_lock(&self->lock);
    unsigned long long sent = self->sent, failed = self->failed;
    Py_ssize_t waiting = self->total;
    pthread_mutex_unlock(&self->lock);
    return Py_BuildValue("(KKn)", sent, failed, waiting);
}

/* take() -> [(assoc, ancillary data, message), ...]: the queue of a sender with no
 * thread (fd -1), in the order it was queued, emptied. */
static PyObject *sender_take(ShedSender *self, PyObject *unused)
{
    if (self->fd >= 0 || self->started) {
        PyErr_SetString(PyExc_RuntimeError, "ShedSender.take: only without a thread (fd -1)");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    pthread_mutex_lock(&self->lock);
    ShedMsg *m = self->incoming;
    self->incoming = self->incoming_tail = NULL;
    self->nbacklogs = 0;
    self->total = 0;
    pthread_mutex_unlock(&self->lock);
    int failed = 0;
    while (m != NULL) {
        ShedMsg *next = m->next;
        PyObject *item = NULL;
        if (!failed)
            item = Py_BuildValue("(iy#y#)", (int)m->assoc, m->ctl.bytes, (Py_ssize_t)m->ctl_len,
                                 m->data, (Py_ssize_t)m->len);
        if (!failed && (item == NULL || PyList_Append(out, item) < 0))
            failed = 1;
        Py_XDECREF(item);
        free(m);
        m = next;
    }
    if (failed)
        Py_CLEAR(out);
    return out;
}

static PyMethodDef sender_methods[] = {
    {"counts", (PyCFunction)sender_counts, METH_NOARGS,
     "counts() -> (sent, failed, waiting): the 3004s sent, failed (association gone or "
     "stopped first) and waiting."},
    {"drain", (PyCFunction)sender_drain, METH_O,
     "drain(timeout) -> bool: wait until nothing waits (True) or timeout seconds pass."},
    {"stop", (PyCFunction)sender_stop, METH_NOARGS,
     "stop(): end the thread; what still waits is dropped and counted as failed."},
    {"take", (PyCFunction)sender_take, METH_NOARGS,
     "take() -> [(assoc, cmsg bytes, message)]: a thread-less sender's queue (tests)."},
    {NULL},
};

PyTypeObject ShedSenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sigmw.diameter._speedups.ShedSender",
    .tp_doc = "ShedSender(fd, limit): sends shed_sctp's 3004s on socket fd from a thread of "
              "its own, at most `limit` waiting per association (fd -1: no thread).",
    .tp_basicsize = sizeof(ShedSender),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = sender_new,
    .tp_init = (initproc)sender_init,
    .tp_dealloc = (destructor)sender_dealloc,
    .tp_methods = sender_methods,
};

int sigmw_is_sender(PyObject *obj)
{
    return PyObject_TypeCheck(obj, &ShedSenderType);
}
