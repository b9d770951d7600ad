/*
 * Shared pieces of the bench's Diameter tools (diam_server.c, diam_load.c):
 * message encoding and parsing, byte buffers, and non-blocking TCP / SCTP
 * connections. Header-only so each tool builds with one gcc call and no
 * library beyond libc.
 *
 * SCTP goes through plain sockets: one-to-one (SOCK_STREAM) associations,
 * sendmmsg with an SCTP_SNDINFO cmsg per message (stream + PPID), recvmmsg (recvmsg
 * while setting up) with an SCTP_RCVINFO cmsg (stream). The constants and structs come from the kernel
 * UAPI and are spelled out here because <netinet/sctp.h> belongs to
 * libsctp-dev, an optional package.
 */
#ifndef DIAM_H
#define DIAM_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- Diameter constants (RFC 6733, RFC 4006) ---- */

#define DIAM_HDR_LEN 20
#define DIAM_MAX_MSG (1u << 20) /* refuse absurd lengths instead of buffering them */

#define FLAG_R 0x80
#define FLAG_P 0x40
#define FLAG_E 0x20
#define AVP_FLAG_V 0x80
#define AVP_FLAG_M 0x40

#define CMD_CE 257
#define CMD_DW 280
#define CMD_DP 282
#define CMD_CC 272

#define AVP_HOST_IP_ADDRESS 257
#define AVP_AUTH_APP_ID 258
#define AVP_SESSION_ID 263
#define AVP_ORIGIN_HOST 264
#define AVP_VENDOR_ID 266
#define AVP_PRODUCT_NAME 269
#define AVP_RESULT_CODE 268
#define AVP_DISCONNECT_CAUSE 273
#define AVP_DEST_REALM 283
#define AVP_ORIGIN_REALM 296
#define AVP_CC_REQUEST_NUMBER 415
#define AVP_CC_REQUEST_TYPE 416

#define DIAMETER_SUCCESS 2001
#define DISCONNECT_REBOOTING 0
#define DIAMETER_PPID 46

/* ---- SCTP UAPI (linux/sctp.h), for hosts without netinet/sctp.h ---- */

#ifndef SOL_SCTP
#define SOL_SCTP 132
#endif
#define BENCH_SCTP_INITMSG 2
#define BENCH_SCTP_NODELAY 3
#define BENCH_SCTP_STATUS 14
#define BENCH_SCTP_RECVRCVINFO 32
#define BENCH_SCTP_CMSG_SNDINFO 2
#define BENCH_SCTP_CMSG_RCVINFO 3
#define BENCH_MSG_NOTIFICATION 0x8000

struct bench_sctp_initmsg {
    uint16_t num_ostreams;
    uint16_t max_instreams;
    uint16_t max_attempts;
    uint16_t max_init_timeo;
};

struct bench_sctp_sndinfo {
    uint16_t sid;
    uint16_t flags;
    uint32_t ppid; /* network byte order on the wire API */
    uint32_t context;
    int32_t assoc_id;
};

struct bench_sctp_rcvinfo {
    uint16_t sid;
    uint16_t ssn;
    uint16_t flags;
    uint32_t ppid;
    uint32_t tsn;
    uint32_t cumtsn;
    uint32_t context;
    int32_t assoc_id;
};

/* sctp_status: only the stream counts are read; offsets per linux/sctp.h. */
#define BENCH_SCTP_STATUS_OUTSTRMS_OFF 18

/* ---- small helpers ---- */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(2);
}

static inline void put24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 16);
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)v;
}

static inline uint32_t get24(const uint8_t *p)
{
    return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}

static inline void put32(uint8_t *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

static inline uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return ntohl(v);
}

/* ---- growable byte buffer: consumed from the front, appended at the back ---- */

typedef struct {
    uint8_t *p;
    size_t len;
    size_t cap;
} buf_t;

static inline void buf_reserve(buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
        die("realloc");
    b->cap = cap;
}

static inline uint8_t *buf_grow(buf_t *b, size_t n)
{
    buf_reserve(b, n);
    uint8_t *at = b->p + b->len;
    b->len += n;
    return at;
}

static inline void buf_consume(buf_t *b, size_t n)
{
    /* One memmove per batch, not per message: callers consume what a batch parsed. */
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* ---- message building: header first, AVPs appended, length patched last ---- */

static inline size_t msg_begin(buf_t *b, uint8_t flags, uint32_t cmd, uint32_t app,
                               uint32_t hbh, uint32_t e2e)
{
    size_t start = b->len;
    uint8_t *h = buf_grow(b, DIAM_HDR_LEN);
    h[0] = 1;
    h[4] = flags;
    put24(h + 5, cmd);
    put32(h + 8, app);
    put32(h + 12, hbh);
    put32(h + 16, e2e);
    return start;
}

static inline void msg_end(buf_t *b, size_t start)
{
    put24(b->p + start + 1, (uint32_t)(b->len - start));
}

static inline void avp_put(buf_t *b, uint32_t code, const void *data, size_t len)
{
    size_t padded = (len + 3) & ~(size_t)3;
    uint8_t *a = buf_grow(b, 8 + padded);
    put32(a, code);
    a[4] = AVP_FLAG_M;
    put24(a + 5, (uint32_t)(8 + len));
    memcpy(a + 8, data, len);
    memset(a + 8 + len, 0, padded - len);
}

static inline void avp_u32(buf_t *b, uint32_t code, uint32_t v)
{
    uint8_t d[4];
    put32(d, v);
    avp_put(b, code, d, 4);
}

static inline void avp_str(buf_t *b, uint32_t code, const char *s)
{
    avp_put(b, code, s, strlen(s));
}

/* Address AVP: 2-byte family (1 = IPv4) then the address. */
static inline void avp_addr4(buf_t *b, uint32_t code, struct in_addr a)
{
    uint8_t d[6] = {0, 1};
    memcpy(d + 2, &a, 4);
    avp_put(b, code, d, 6);
}

/* ---- message parsing ---- */

typedef struct {
    uint8_t flags;
    uint32_t cmd;
    uint32_t app;
    uint32_t hbh;
    uint32_t e2e;
    const uint8_t *p; /* whole message */
    size_t len;
} dmsg_t;

/* Returns the message length if a whole message is at p, 0 if more bytes are
 * needed, -1 if the bytes cannot be Diameter (the caller drops the connection:
 * there is no way to resynchronise a byte stream). */
static inline long msg_parse(const uint8_t *p, size_t avail, dmsg_t *m)
{
    if (avail < DIAM_HDR_LEN)
        return 0;
    uint32_t len = get24(p + 1);
    if (p[0] != 1 || len < DIAM_HDR_LEN || len > DIAM_MAX_MSG || (len & 3))
        return -1;
    if (avail < len)
        return 0;
    m->flags = p[4];
    m->cmd = get24(p + 5);
    m->app = get32(p + 8);
    m->hbh = get32(p + 12);
    m->e2e = get32(p + 16);
    m->p = p;
    m->len = len;
    return (long)len;
}

/* First top-level AVP with this code (vendor 0); NULL if absent or malformed. */
static inline const uint8_t *avp_find(const dmsg_t *m, uint32_t code, size_t *dlen)
{
    size_t off = DIAM_HDR_LEN;
    while (off + 8 <= m->len) {
        const uint8_t *a = m->p + off;
        uint32_t alen = get24(a + 5);
        size_t hdr = (a[4] & AVP_FLAG_V) ? 12 : 8;
        if (alen < hdr || off + alen > m->len)
            return NULL;
        if (get32(a) == code && hdr == 8) {
            *dlen = alen - hdr;
            return a + hdr;
        }
        off += (alen + 3) & ~3u;
    }
    return NULL;
}

static inline int avp_find_u32(const dmsg_t *m, uint32_t code, uint32_t *v)
{
    size_t n;
    const uint8_t *d = avp_find(m, code, &n);
    if (!d || n != 4)
        return -1;
    *v = get32(d);
    return 0;
}

/* ---- connections ---- */

typedef struct {
    int fd;
    int sctp;
    uint16_t rx_stream;  /* stream of the last SCTP message read */
    uint16_t ostreams;   /* negotiated outbound streams (SCTP) */
    int want_out;        /* EPOLLOUT armed */
    buf_t in;
    buf_t out;           /* TCP: raw bytes; SCTP: [u32 stream][message] records */
    struct in_addr local;
} conn_t;

static inline void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("fcntl");
}

static inline int setopt_int(int fd, int level, int opt, int v)
{
    return setsockopt(fd, level, opt, &v, sizeof v);
}

/* A big socket buffer: forced where allowed (root, as in the bench's namespace),
 * else what net.core.[rw]mem_max grants. Under SCTP overload a tool whose
 * receive buffer fills makes its kernel drop packets, and the relay's
 * retransmission timers (1 s minimum) then stall every answer to it: the tools
 * must never be where a run collapses. */
static inline void sock_buffer(int fd, int forced, int plain)
{
    if (setopt_int(fd, SOL_SOCKET, forced, 4 << 20) < 0)
        setopt_int(fd, SOL_SOCKET, plain, 4 << 20);
}

/* Socket options both tools want: no Nagle (request/answer traffic), big
 * buffers, and for SCTP the per-message stream info and many streams. */
static inline void sock_tune(int fd, int sctp)
{
    sock_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
    sock_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF);
    if (!sctp) {
        setopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
        return;
    }
    struct bench_sctp_initmsg im = {.num_ostreams = 32, .max_instreams = 32};
    if (setsockopt(fd, SOL_SCTP, BENCH_SCTP_INITMSG, &im, sizeof im) < 0)
        die("setsockopt SCTP_INITMSG");
    if (setopt_int(fd, SOL_SCTP, BENCH_SCTP_NODELAY, 1) < 0)
        die("setsockopt SCTP_NODELAY");
    if (setopt_int(fd, SOL_SCTP, BENCH_SCTP_RECVRCVINFO, 1) < 0)
        die("setsockopt SCTP_RECVRCVINFO");
}

static inline int sock_new(int sctp)
{
    int fd = socket(AF_INET, SOCK_STREAM, sctp ? IPPROTO_SCTP : IPPROTO_TCP);
    if (fd < 0)
        die(sctp ? "socket(SCTP) (no kernel SCTP here?)" : "socket(TCP)");
    setopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    sock_tune(fd, sctp);
    return fd;
}

static inline struct sockaddr_in sock_addr(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address: %s\n", ip);
        exit(2);
    }
    return sa;
}

static inline void conn_init(conn_t *c, int fd, int sctp)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->sctp = sctp;
    c->ostreams = 1;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        c->local = sa.sin_addr;
    if (sctp) {
        uint8_t st[256];
        socklen_t stl = sizeof st;
        memset(st, 0, sizeof st);
        if (getsockopt(fd, SOL_SCTP, BENCH_SCTP_STATUS, st, &stl) == 0) {
            uint16_t os;
            memcpy(&os, st + BENCH_SCTP_STATUS_OUTSTRMS_OFF, 2);
            c->ostreams = os ? os : 1;
        }
    }
}

static inline void conn_free(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in.p);
    free(c->out.p);
    c->in = (buf_t){0};
    c->out = (buf_t){0};
}

/* Starts a message in the output queue; SCTP records carry their stream. */
static inline size_t conn_begin(conn_t *c, uint16_t stream, uint8_t flags, uint32_t cmd,
                                uint32_t app, uint32_t hbh, uint32_t e2e)
{
    if (c->sctp)
        put32(buf_grow(&c->out, 4), stream);
    return msg_begin(&c->out, flags, cmd, app, hbh, e2e);
}

/* Reads one chunk. TCP: up to 256 KiB, so one read usually takes everything a
 * burst delivered. SCTP: recvmsg returns at most one message, so the caller
 * handles it (knowing its stream) before the next read. Returns bytes read,
 * 0 on EAGAIN, -1 on EOF or error. */
static inline long conn_read(conn_t *c)
{
    size_t want = c->sctp ? 65536 : 262144;
    buf_reserve(&c->in, want);
    ssize_t n;
    if (!c->sctp) {
        n = read(c->fd, c->in.p + c->in.len, want);
    } else {
        char cbuf[CMSG_SPACE(sizeof(struct bench_sctp_rcvinfo))];
        struct iovec iov = {c->in.p + c->in.len, want};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        n = recvmsg(c->fd, &mh, 0);
        /* Nothing subscribes to notifications, but one must never pass for Diameter. */
        if (n > 0 && (mh.msg_flags & BENCH_MSG_NOTIFICATION))
            return 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n > 0 && cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SCTP && cm->cmsg_type == BENCH_SCTP_CMSG_RCVINFO) {
                struct bench_sctp_rcvinfo ri;
                memcpy(&ri, CMSG_DATA(cm), sizeof ri);
                c->rx_stream = ri.sid;
            }
        }
    }
    if (n > 0) {
        c->in.len += (size_t)n;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -1;
}

/* SCTP reads: up to SCTP_RX_BATCH messages (or pieces of one) with one recvmmsg, as a
 * relay under load reads; the caller takes them one by one (sctp_rx_take) and handles
 * each, knowing its stream, before the next. A recvmsg each cost the generator a system
 * call per answer, CPU the relay it measures lacks where both share a machine. */
#define SCTP_RX_BATCH 64
#define SCTP_RX_SLOT 16384

typedef struct {
    struct mmsghdr mh[SCTP_RX_BATCH];
    struct iovec iov[SCTP_RX_BATCH];
    char cbuf[SCTP_RX_BATCH][CMSG_SPACE(sizeof(struct bench_sctp_rcvinfo))];
    uint8_t data[SCTP_RX_BATCH][SCTP_RX_SLOT];
} sctp_rx_t;

static sctp_rx_t sctp_rx; /* one per tool: single-threaded, a batch is used up at once */

/* Reads what waits on fd into sctp_rx: how many reads, 0 on EAGAIN, -1 on error. */
static inline int sctp_rx_read(int fd)
{
    for (int i = 0; i < SCTP_RX_BATCH; i++) {
        sctp_rx.iov[i] = (struct iovec){sctp_rx.data[i], SCTP_RX_SLOT};
        sctp_rx.mh[i].msg_hdr = (struct msghdr){.msg_iov = &sctp_rx.iov[i], .msg_iovlen = 1,
                                                .msg_control = sctp_rx.cbuf[i],
                                                .msg_controllen = sizeof sctp_rx.cbuf[i]};
    }
    int n = recvmmsg(fd, sctp_rx.mh, SCTP_RX_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    return n;
}

/* Read i of sctp_rx appended to c->in, c->rx_stream set to its stream: the bytes, 0 for
 * a notification (dropped: one must never pass for Diameter), -1 at the peer's EOF. */
static inline long sctp_rx_take(conn_t *c, int i)
{
    struct msghdr *mh = &sctp_rx.mh[i].msg_hdr;
    size_t n = sctp_rx.mh[i].msg_len;
    if (mh->msg_flags & BENCH_MSG_NOTIFICATION)
        return 0;
    if (n == 0)
        return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == SOL_SCTP && cm->cmsg_type == BENCH_SCTP_CMSG_RCVINFO) {
            struct bench_sctp_rcvinfo ri;
            memcpy(&ri, CMSG_DATA(cm), sizeof ri);
            c->rx_stream = ri.sid;
        }
    }
    memcpy(buf_grow(&c->in, n), sctp_rx.data[i], n);
    return (long)n;
}

/* SCTP sends go out SCTP_BURST records a sendmmsg; all but a burst's last with
 * MSG_MORE, so the kernel bundles them into few packets (SCTP_NODELAY is set),
 * as a relay under load does. The burst's last goes without it, so nothing
 * stays corked once a flush is over, and never more than SCTP_BURST in a row
 * (corked messages that fill a send buffer are never sent). */
#define SCTP_BURST 32

typedef struct {
    struct mmsghdr mh[SCTP_BURST];
    struct iovec iov[SCTP_BURST];
    char cbuf[SCTP_BURST][CMSG_SPACE(sizeof(struct bench_sctp_sndinfo))];
} sctp_burst_t;

/* Fills entry i of the burst with one queued record (stream, then message). */
static inline void sctp_burst_put(sctp_burst_t *b, int i, const uint8_t *rec, size_t mlen)
{
    memset(b->cbuf[i], 0, sizeof b->cbuf[i]);
    b->iov[i] = (struct iovec){(void *)(rec + 4), mlen};
    b->mh[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &b->iov[i], .msg_iovlen = 1,
                                            .msg_control = b->cbuf[i],
                                            .msg_controllen = sizeof b->cbuf[i]}};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&b->mh[i].msg_hdr);
    cm->cmsg_level = SOL_SCTP;
    cm->cmsg_type = BENCH_SCTP_CMSG_SNDINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(struct bench_sctp_sndinfo));
    struct bench_sctp_sndinfo si = {.sid = (uint16_t)get32(rec), .ppid = htonl(DIAMETER_PPID)};
    memcpy(CMSG_DATA(cm), &si, sizeof si);
}

/* Sends the n records of a burst; returns how many went, or -1 on an error
 * other than EAGAIN/EINTR. */
static inline int sctp_burst_send(int fd, sctp_burst_t *b, int n)
{
    int sent = 0;
    if (n > 1) {
        sent = sendmmsg(fd, b->mh, (unsigned)(n - 1), MSG_NOSIGNAL | MSG_MORE);
        if (sent < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
    }
    if (sent == n - 1) {
        int r = sendmmsg(fd, b->mh + sent, 1, MSG_NOSIGNAL);
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        sent += r > 0;
    }
    return sent;
}

/* Sends what is queued: TCP in one write (the batching that keeps syscalls per
 * message low), SCTP in bursts of sendmmsg (each message carries its stream).
 * Returns 0 (possibly with bytes left: caller arms EPOLLOUT) or -1 on error. */
static inline int conn_flush(conn_t *c)
{
    size_t done = 0;
    if (!c->sctp) {
        while (done < c->out.len) {
            ssize_t n = write(c->fd, c->out.p + done, c->out.len - done);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                return -1;
            }
            done += (size_t)n;
        }
    } else {
        sctp_burst_t b;
        size_t size[SCTP_BURST];
        while (done + 4 + DIAM_HDR_LEN <= c->out.len) {
            int n = 0;
            for (size_t at = done; n < SCTP_BURST && at + 4 + DIAM_HDR_LEN <= c->out.len; n++) {
                size[n] = get24(c->out.p + at + 5);
                sctp_burst_put(&b, n, c->out.p + at, size[n]);
                at += 4 + size[n];
            }
            int sent = sctp_burst_send(c->fd, &b, n);
            if (sent < 0)
                return -1;
            for (int i = 0; i < sent; i++)
                done += 4 + size[i];
            if (sent < n)
                break; /* EAGAIN: the caller arms EPOLLOUT */
        }
    }
    buf_consume(&c->out, done);
    return 0;
}

#endif
