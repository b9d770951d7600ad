/*
 * diam_server: the bench's answering Diameter server. Single-threaded epoll,
 * TCP or SCTP (one-to-one sockets, PPID 46, answers on the request's stream).
 *
 * It must never be the bottleneck of a relay benchmark, so it does the least
 * work an answer needs: it reads a batch, answers every whole request in it
 * (CER, DWR, DPR and any other request with Result-Code 2001), and sends the
 * batch of answers with one write on TCP.
 *
 * usage: diam_server --listen IP --port N [--sctp] --origin-host H
 *                    --origin-realm R [--apps 4,16777238] [--vendor-id N]
 * Prints "READY <port>" on stdout once listening (port 0 picks a free one).
 */
#include "diam.h"

#include <signal.h>
#include <sys/epoll.h>

#define MAX_FDS 65536
#define MAX_APPS 16

static struct {
    const char *host;
    const char *realm;
    uint32_t vendor_id;
    uint32_t apps[MAX_APPS];
    int napps;
    int sctp;
} cfg = {.host = "server.bench", .realm = "server.realm", .vendor_id = 0};

static conn_t *conns[MAX_FDS];

static void answer_common(conn_t *c, const dmsg_t *m, uint8_t flags)
{
    size_t start = conn_begin(c, c->rx_stream, flags, m->cmd, m->app, m->hbh, m->e2e);
    size_t sid_len;
    const uint8_t *sid = avp_find(m, AVP_SESSION_ID, &sid_len);
    /* RFC 6733: Session-Id, when present, is the answer's first AVP. */
    if (sid)
        avp_put(&c->out, AVP_SESSION_ID, sid, sid_len);
    avp_u32(&c->out, AVP_RESULT_CODE, DIAMETER_SUCCESS);
    avp_str(&c->out, AVP_ORIGIN_HOST, cfg.host);
    avp_str(&c->out, AVP_ORIGIN_REALM, cfg.realm);
    if (m->cmd == CMD_CE) {
        avp_addr4(&c->out, AVP_HOST_IP_ADDRESS, c->local);
        avp_u32(&c->out, AVP_VENDOR_ID, cfg.vendor_id);
        avp_str(&c->out, AVP_PRODUCT_NAME, "sigmw-bench-server");
        for (int i = 0; i < cfg.napps; i++)
            avp_u32(&c->out, AVP_AUTH_APP_ID, cfg.apps[i]);
    }
    msg_end(&c->out, start);
}

/* Answers every whole request in the input buffer; -1 means drop the peer. */
static int handle_input(conn_t *c)
{
    size_t off = 0;
    for (;;) {
        dmsg_t m;
        long n = msg_parse(c->in.p + off, c->in.len - off, &m);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        off += (size_t)n;
        /* Answers (e.g. a DWA to nothing we sent) need no reply. */
        if (m.flags & FLAG_R)
            answer_common(c, &m, m.flags & FLAG_P);
    }
    buf_consume(&c->in, off);
    return 0;
}

static void drop(int ep, conn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    conns[c->fd] = NULL;
    conn_free(c);
    free(c);
}

static void arm_out(int ep, conn_t *c)
{
    int want = c->out.len > 0;
    if (want == c->want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void accept_all(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0)
            return;
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        sock_tune(fd, cfg.sctp);
        conn_t *c = malloc(sizeof *c);
        if (!c)
            die("malloc");
        conn_init(c, fd, cfg.sctp);
        conns[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

/* One readiness event: TCP reads one big chunk; SCTP reads a batch of messages (one
 * recvmmsg), answering each before taking the next because the answer's stream is the
 * request's. One flush at the end either way. */
static void on_readable(int ep, conn_t *c)
{
    long n;
    if (!c->sctp) {
        n = conn_read(c);
        if (n > 0 && handle_input(c) < 0)
            n = -1;
    } else {
        int got = sctp_rx_read(c->fd);
        n = got < 0 ? -1 : 0;
        for (int i = 0; i < got && n >= 0; i++) {
            n = sctp_rx_take(c, i);
            if (n > 0 && handle_input(c) < 0)
                n = -1;
        }
    }
    if (n < 0) {
        drop(ep, c);
        return;
    }
    if (conn_flush(c) < 0) {
        drop(ep, c);
        return;
    }
    arm_out(ep, c);
}

static void parse_apps(const char *s)
{
    cfg.napps = 0;
    while (*s && cfg.napps < MAX_APPS) {
        char *end;
        cfg.apps[cfg.napps++] = (uint32_t)strtoul(s, &end, 10);
        s = (*end == ',') ? end + 1 : end;
        if (end == s && *s)
            break;
    }
}

int main(int argc, char **argv)
{
    const char *ip = "127.0.0.1";
    int port = 0;
    cfg.apps[0] = 4;
    cfg.napps = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--sctp")) { cfg.sctp = 1; continue; }
        if (!strcmp(a, "--listen")) ip = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--origin-host")) cfg.host = v;
        else if (!strcmp(a, "--origin-realm")) cfg.realm = v;
        else if (!strcmp(a, "--apps")) parse_apps(v);
        else if (!strcmp(a, "--vendor-id")) cfg.vendor_id = (uint32_t)strtoul(v, NULL, 10);
        else { fprintf(stderr, "diam_server: unknown argument %s\n", a); return 2; }
        i++;
    }
    signal(SIGPIPE, SIG_IGN);

    int lfd = sock_new(cfg.sctp);
    struct sockaddr_in sa = sock_addr(ip, port);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(lfd, 1024) < 0)
        die("listen");
    set_nonblock(lfd);
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("READY %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                accept_all(ep, lfd);
                continue;
            }
            conn_t *c = conns[fd];
            if (!c)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(ep, c);
                continue;
            }
            if (conn_flush(c) < 0)
                drop(ep, c);
            else
                arm_out(ep, c);
        }
    }
}
