/* What the two source files of sigmw.diameter._speedups share. */
#ifndef SIGMW_SPEEDUPS_H
#define SIGMW_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <sys/socket.h>

#define HEADER_LEN 20
#define FLAG_REQUEST 0x80
#define FLAG_PROXIABLE 0x40
#define FLAG_ERROR 0x20

static inline uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* _speedups.c: wire.scan's walk (a new wire.Scanned, None if malformed, NULL on error). */
PyObject *sigmw_scan(PyObject *data);
/* _speedups.c: wire.result_code on a whole message; -1 for None. */
int64_t sigmw_result_code(const unsigned char *d, Py_ssize_t len);
/* _speedups.c: wire.busy_answer (a new bytes object, NULL on error). */
PyObject *sigmw_busy_answer(const unsigned char *d, Py_ssize_t len, PyObject *tail);
/* _speedups.c: wire.busy_answer's size, and the answer written to `out` (that size). */
Py_ssize_t sigmw_busy_answer_size(const unsigned char *d, Py_ssize_t len, Py_ssize_t tail_len);
void sigmw_busy_answer_write(const unsigned char *d, Py_ssize_t size, const char *tail,
                             Py_ssize_t tail_len, unsigned char *out);

/* _shedsend.c: one 3004 queued for the sender thread, with its ancillary data. */
#define SHED_CONTROL_MAX 64
typedef union {
    struct cmsghdr align;
    unsigned char bytes[SHED_CONTROL_MAX];
} ShedControl;
typedef struct ShedMsg {
    struct ShedMsg *next;
    int32_t assoc;
    uint32_t len;
    uint16_t ctl_len;
    ShedControl ctl;
    unsigned char data[];
} ShedMsg;
/* A message of `len` bytes (data left to the caller to fill), NULL if out of memory. */
ShedMsg *sigmw_shed_msg_new(int32_t assoc, size_t len, const ShedControl *ctl, uint16_t ctl_len);
/* Queue msgs[0..n) on a ShedSender, taking them all (accepted[i]: queued, else freed past
 * the association's bound); -1 if memory ran out (what was not queued is freed). */
int sigmw_sender_push(PyObject *sender, ShedMsg **msgs, Py_ssize_t n, unsigned char *accepted);
int sigmw_is_sender(PyObject *obj);
extern PyTypeObject ShedSenderType;
/* _hotpath.c: adds Pending, Peer, RelayHot and crc32 to the module; -1 on error. */
int sigmw_hotpath_init(PyObject *module);
/* _hotpath.c: RelayHot.request and .answer without the Send: 1 when the C path took the
 * message (*peer, *msg: new references, *stream set), 0 when it is not the usual case
 * (nothing changed: the Python path runs), -1 on error. `data` must be bytes. */
int sigmw_hot_request(PyObject *hot, PyObject *origin, PyObject *data, double now,
                      PyObject **peer, PyObject **msg, long *stream);
int sigmw_hot_answer(PyObject *hot, PyObject *peer, PyObject *data, double now,
                     PyObject **peer_out, PyObject **msg, long *stream);
int sigmw_is_hot(PyObject *obj);
/* _hotpath.c: count a message Direct relayed in C (in_c) or handed to Python. */
void sigmw_hot_count(PyObject *hot, int in_c);
/* _direct.c: adds Direct to the module; -1 on error. */
int sigmw_direct_init(PyObject *module);
/* _hotpath.c: zlib.crc32, for session -> stream. */
uint32_t sigmw_crc32(const unsigned char *p, Py_ssize_t n);
/* _shed.c: add to a traffic cell (a [messages, bytes] list of Traffic.counts); -1 on
 * error. */
int sigmw_count_cell(PyObject *cell, Py_ssize_t messages, Py_ssize_t size);
/* _shed.c: adds ShedSender, shed_sctp, shed_tcp and recv_shed to the module; -1 on
 * error. */
int sigmw_shed_init(PyObject *module);

#endif
