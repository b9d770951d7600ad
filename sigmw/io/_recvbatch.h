/*
 * One batch of SCTP reads with recvmmsg(2), for the two extension modules that read
 * SCTP sockets: sigmw.io._mmsg (recv_batch) and sigmw.diameter._speedups (recv_shed).
 * Header-only (static functions) because they are built apart and the io module must
 * not depend on the Diameter one; each keeps one RecvBatch of its own.
 *
 * A read comes back to Python as SctpTransport takes it: (data, msg_flags, raw
 * SCTP_RCVINFO or None, raw source sockaddr).
 *
 * Not thread-safe by design: a module's batch is static and the GIL is held throughout
 * (the socket is non-blocking, so recvmmsg never waits).
 */
#ifndef SIGMW_RECVBATCH_H
#define SIGMW_RECVBATCH_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN /* y# takes a Py_ssize_t */
#endif
#include <Python.h> /* first: it sets _GNU_SOURCE, which recvmmsg needs */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

/* From <netinet/sctp.h>, which not every build machine has installed. */
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif
#define RECVBATCH_RCVINFO_TYPE 3  /* cmsg_type of struct sctp_rcvinfo */
#define RECVBATCH_RCVINFO_LEN 28  /* sizeof(struct sctp_rcvinfo) */
#define RECVBATCH_MAX 64          /* reads a batch */
#define RECVBATCH_MAX_SLOT (1 << 20)

typedef struct {
    unsigned char *slots; /* RECVBATCH_MAX data buffers of slot_size bytes */
    Py_ssize_t slot_size;
    struct mmsghdr headers[RECVBATCH_MAX];
    struct iovec iovs[RECVBATCH_MAX];
    struct sockaddr_storage names[RECVBATCH_MAX];
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(RECVBATCH_RCVINFO_LEN) + CMSG_SPACE(64)];
    } controls[RECVBATCH_MAX];
} RecvBatch;

/* Read up to `want` messages (or pieces of messages) of at most `size` bytes each:
 * how many, 0 when nothing waits, -1 with a Python error set. The caller checks
 * 1 <= want <= RECVBATCH_MAX and 1 <= size <= RECVBATCH_MAX_SLOT. */
static int recvbatch_read(RecvBatch *b, int fd, int want, Py_ssize_t size)
{
    if (b->slots == NULL || b->slot_size != size) {
        unsigned char *grown = realloc(b->slots, (size_t)size * RECVBATCH_MAX);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->slots = grown, b->slot_size = size;
    }
    for (int i = 0; i < want; i++) {
        b->iovs[i] = (struct iovec){b->slots + (Py_ssize_t)i * size, (size_t)size};
        b->headers[i].msg_hdr = (struct msghdr){.msg_name = &b->names[i],
                                                .msg_namelen = sizeof b->names[i],
                                                .msg_iov = &b->iovs[i],
                                                .msg_iovlen = 1,
                                                .msg_control = b->controls[i].bytes,
                                                .msg_controllen = sizeof b->controls[i].bytes};
    }
    int got = recvmmsg(fd, b->headers, (unsigned int)want, MSG_DONTWAIT, NULL);
    if (got >= 0)
        return got;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* Read i's data and its length. */
static inline const unsigned char *recvbatch_data(const RecvBatch *b, int i)
{
    return b->slots + (Py_ssize_t)i * b->slot_size;
}

static inline Py_ssize_t recvbatch_len(const RecvBatch *b, int i)
{
    return (Py_ssize_t)b->headers[i].msg_len;
}

static inline int recvbatch_flags(const RecvBatch *b, int i)
{
    return b->headers[i].msg_hdr.msg_flags;
}

/* Read i's struct sctp_rcvinfo, NULL if it came without one. */
static const unsigned char *recvbatch_rcvinfo(RecvBatch *b, int i)
{
    struct msghdr *msg = &b->headers[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c))
        if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == RECVBATCH_RCVINFO_TYPE &&
            c->cmsg_len >= CMSG_LEN(RECVBATCH_RCVINFO_LEN))
            return CMSG_DATA(c);
    return NULL;
}

/* Read i as SctpTransport takes it: (data, msg_flags, raw SCTP_RCVINFO or None, raw
 * source sockaddr); a new reference, NULL with a Python error set. */
static PyObject *recvbatch_tuple(RecvBatch *b, int i)
{
    const unsigned char *rcv = recvbatch_rcvinfo(b, i);
    PyObject *info = rcv ? PyBytes_FromStringAndSize((const char *)rcv, RECVBATCH_RCVINFO_LEN)
                         : Py_NewRef(Py_None);
    if (info == NULL)
        return NULL;
    struct msghdr *msg = &b->headers[i].msg_hdr;
    return Py_BuildValue("(y#iNy#)", (const char *)recvbatch_data(b, i), recvbatch_len(b, i),
                         msg->msg_flags, info, (const char *)&b->names[i],
                         (Py_ssize_t)msg->msg_namelen);
}

#endif
