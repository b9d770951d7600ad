/*
 * sigmw.io._recv: read a batch of SCTP messages with one recvmmsg(2).
 *
 * SctpTransport._on_readable otherwise makes one socket.recvmsg call per message,
 * each building a list of ancillary-data tuples and an address tuple. Here one
 * system call reads up to 64 messages (or pieces of messages) and each comes back
 * as (data, msg_flags, raw SCTP_RCVINFO or None, raw source sockaddr); the Python
 * code decodes the rest only when it needs it. transport.py keeps the recvmsg loop
 * as the reference and falls back to it when this module is not built.
 *
 * Not thread-safe by design: the buffers are static and the GIL is held throughout
 * (the socket is non-blocking, so the call never waits).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* From <netinet/sctp.h>, which not every build machine has installed. */
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif
#define SCTP_RCVINFO_CMSG 3  /* cmsg_type of struct sctp_rcvinfo */
#define RCVINFO_SIZE 28      /* sizeof(struct sctp_rcvinfo) */

#define MAX_BATCH 64
#define MAX_SLOT (1 << 20)

static char *slots;          /* MAX_BATCH data buffers of slot_size bytes */
static Py_ssize_t slot_size;
static struct mmsghdr headers[MAX_BATCH];
static struct iovec iovs[MAX_BATCH];
static struct sockaddr_storage names[MAX_BATCH];
static union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(RCVINFO_SIZE) + CMSG_SPACE(64)];
} controls[MAX_BATCH];

static int ensure_slots(Py_ssize_t size)
{
    if (slots != NULL && slot_size == size)
        return 0;
    char *grown = realloc(slots, (size_t)size * MAX_BATCH);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    slots = grown;
    slot_size = size;
    return 0;
}

static PyObject *rcvinfo_of(struct msghdr *msg)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO_CMSG &&
            c->cmsg_len >= CMSG_LEN(RCVINFO_SIZE))
            return PyBytes_FromStringAndSize((const char *)CMSG_DATA(c), RCVINFO_SIZE);
    }
    Py_RETURN_NONE;
}

static PyObject *item_of(int i)
{
    struct msghdr *msg = &headers[i].msg_hdr;
    PyObject *data = PyBytes_FromStringAndSize(slots + (Py_ssize_t)i * slot_size,
                                               (Py_ssize_t)headers[i].msg_len);
    PyObject *flags = PyLong_FromLong(msg->msg_flags);
    PyObject *info = rcvinfo_of(msg);
    PyObject *source = PyBytes_FromStringAndSize((const char *)&names[i], msg->msg_namelen);
    if (data == NULL || flags == NULL || info == NULL || source == NULL) {
        Py_XDECREF(data);
        Py_XDECREF(flags);
        Py_XDECREF(info);
        Py_XDECREF(source);
        return NULL;
    }
    PyObject *item = PyTuple_Pack(4, data, flags, info, source);
    Py_DECREF(data);
    Py_DECREF(flags);
    Py_DECREF(info);
    Py_DECREF(source);
    return item;
}

static PyObject *recv_batch(PyObject *self, PyObject *args)
{
    int fd, want;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iin", &fd, &want, &size))
        return NULL;
    if (want < 1 || want > MAX_BATCH || size < 1 || size > MAX_SLOT) {
        PyErr_Format(PyExc_ValueError, "recv_batch: 1..%d messages of 1..%d bytes",
                     MAX_BATCH, MAX_SLOT);
        return NULL;
    }
    if (ensure_slots(size) < 0)
        return NULL;
    for (int i = 0; i < want; i++) {
        iovs[i].iov_base = slots + (Py_ssize_t)i * size;
        iovs[i].iov_len = (size_t)size;
        struct msghdr *msg = &headers[i].msg_hdr;
        msg->msg_name = &names[i];
        msg->msg_namelen = sizeof names[i];
        msg->msg_iov = &iovs[i];
        msg->msg_iovlen = 1;
        msg->msg_control = controls[i].bytes;
        msg->msg_controllen = sizeof controls[i].bytes;
        msg->msg_flags = 0;
    }
    int got = recvmmsg(fd, headers, (unsigned int)want, MSG_DONTWAIT, NULL);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(got);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < got; i++) {
        PyObject *item = item_of(i);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"recv_batch", recv_batch, METH_VARARGS,
     "recv_batch(fd, max_messages, slot_size) -> [(data, msg_flags, rcvinfo | None, "
     "sockaddr)]: one non-blocking recvmmsg; [] when nothing is waiting."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sigmw.io._recv",
    "Batched SCTP receive (recvmmsg) for SctpTransport.", -1, methods,
};

PyMODINIT_FUNC PyInit__recv(void) { return PyModule_Create(&module); }
