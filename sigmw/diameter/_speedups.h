/* What the two source files of sigmw.diameter._speedups share. */
#ifndef SIGMW_SPEEDUPS_H
#define SIGMW_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

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
/* _hotpath.c: adds Pending, Peer, RelayHot and crc32 to the module; -1 on error. */
int sigmw_hotpath_init(PyObject *module);

#endif
