/*
 * diam_load: the bench's Diameter load generator. Single-threaded epoll, TCP
 * or SCTP (one-to-one sockets, PPID 46, each session's requests on one stream).
 *
 * Each connection does CER/CEA with its own Origin-Host (gen-<i>.<realm>, as
 * relays want one identity per peer connection), answers DWR and DPR, then
 * sends CCR-like requests (command 272, application 4, R+P flags). Two modes:
 *   --closed N  N requests in flight (throughput ceiling of what is behind us)
 *   --rate R    open loop: request k is due at start + k/R whatever the answers
 *               do, and its latency runs from that due time, so a stall shows
 *               up in the latency of every request it delayed (no coordinated
 *               omission). The generator wakes at the request interval, or every
 *               --tick-us microseconds (default 50) if that is longer, and sends
 *               all that is due in one burst.
 * Only requests due inside the measured window (after --warmup, for
 * --duration seconds) are counted; after the window, outstanding requests get
 * --timeout seconds to be answered, then every connection says DPR
 * (REBOOTING, so a relay lets the next run reconnect at once).
 *
 * Every answer must match an outstanding request by end-to-end id, with the
 * same hop-by-hop id, command and connection; others count as mismatches or
 * duplicates. Answers are counted by Result-Code, and latency is kept apart
 * for 2001, 3004 (TOO_BUSY: a relay shedding load) and any other code, so a
 * fast rejection never hides in the latency of real answers; "goodput" is
 * the rate of 2001 answers over the window. Prints one JSON line on stdout; "MEASURE_START" and
 * "MEASURE_END" lines on stderr let a caller sample a relay's CPU time over
 * exactly the measured window.
 */
#include "diam.h"

#include <math.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>

#define SLOT_BITS 20 /* outstanding-request table: 1M entries, indexed by e2e id */
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_CONNS 256
#define MAX_CODES 32
#define TIMER_TAG (-1)

enum { SLOT_FREE, SLOT_OUT, SLOT_DONE };
enum { LAT_ALL, LAT_OK, LAT_BUSY, LAT_OTHER, LAT_CLASSES };
static const char *const lat_names[LAT_CLASSES] = {"all", "2001", "3004", "other"};
#define DIAMETER_TOO_BUSY 3004

typedef struct {
    uint64_t *v; /* ns, one per measured answer */
    size_t n, cap;
} lat_t;

typedef struct {
    uint64_t due;     /* ns: scheduled (open loop) or actual (closed loop) send time */
    uint32_t e2e;
    uint32_t hbh;
    uint16_t conn;
    uint8_t state;
    uint8_t measured;
} slot_t;

typedef struct {
    conn_t c;
    char host[128];
    uint32_t next_hbh;
    uint64_t nreq; /* requests sent here: numbers this connection's sessions */
    int share;     /* closed loop: requests this connection keeps in flight */
    int dpa;
} gconn_t;

static struct {
    const char *ip, *realm, *dest_realm;
    int port, sctp, nconns, closed, session_len;
    uint32_t app;
    double rate, warmup, duration, timeout, tick_us;
} opt = {"127.0.0.1", "clients.bench", "server.realm", 3868, 0, 1, 0, 4, 4, 0, 1, 5, 2, 50};

static struct {
    gconn_t conns[MAX_CONNS];
    slot_t *slots;
    uint32_t e2e_base, run_id;
    uint64_t seq, rr, outstanding;
    uint64_t t_start, t_meas0, t_meas1; /* planned window */
    uint64_t w0, w1;                    /* window as actually observed */
    int phase;                          /* 0 warm-up, 1 measuring, 2 draining, 3 closing */
    uint64_t sent, answered, overrun, late, mismatches, duplicates, window_answers, window_ok;
    uint64_t max_send_lag;
    lat_t lat[LAT_CLASSES];
    uint32_t codes[MAX_CODES][2];
    int ncodes;
    double cpu0, cpu1;
} G;

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void count_code(uint32_t code)
{
    for (int i = 0; i < G.ncodes; i++)
        if (G.codes[i][0] == code) {
            G.codes[i][1]++;
            return;
        }
    if (G.ncodes < MAX_CODES) {
        G.codes[G.ncodes][0] = code;
        G.codes[G.ncodes++][1] = 1;
    }
}

static void push_latency(lat_t *l, uint64_t ns)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1 << 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            die("realloc");
    }
    l->v[l->n++] = ns;
}

/* ---- messages ---- */

static void put_identity(gconn_t *g)
{
    avp_str(&g->c.out, AVP_ORIGIN_HOST, g->host);
    avp_str(&g->c.out, AVP_ORIGIN_REALM, opt.realm);
}

static void send_cer(gconn_t *g)
{
    size_t s = conn_begin(&g->c, 0, FLAG_R, CMD_CE, 0, g->next_hbh++, G.e2e_base - 1);
    put_identity(g);
    avp_addr4(&g->c.out, AVP_HOST_IP_ADDRESS, g->c.local);
    avp_u32(&g->c.out, AVP_VENDOR_ID, 0);
    avp_str(&g->c.out, AVP_PRODUCT_NAME, "sigmw-bench-load");
    avp_u32(&g->c.out, AVP_AUTH_APP_ID, opt.app);
    msg_end(&g->c.out, s);
}

static void send_dpr(gconn_t *g)
{
    size_t s = conn_begin(&g->c, 0, FLAG_R, CMD_DP, 0, g->next_hbh++, G.e2e_base - 2);
    put_identity(g);
    avp_u32(&g->c.out, AVP_DISCONNECT_CAUSE, DISCONNECT_REBOOTING);
    msg_end(&g->c.out, s);
}

static void answer_peer_request(gconn_t *g, const dmsg_t *m)
{
    size_t s = conn_begin(&g->c, g->c.rx_stream, 0, m->cmd, m->app, m->hbh, m->e2e);
    avp_u32(&g->c.out, AVP_RESULT_CODE, DIAMETER_SUCCESS);
    put_identity(g);
    msg_end(&g->c.out, s);
}

/* Same session -> same stream (ordered), sessions spread over streams 1..n-1;
 * stream 0 stays for CER/DWR/DPR. */
static uint16_t session_stream(const gconn_t *g, uint64_t session)
{
    if (!g->c.sctp || g->c.ostreams < 2)
        return 0;
    uint64_t h = (session + 1) * 0x9E3779B97F4A7C15ull;
    return (uint16_t)(1 + (h >> 32) % (uint64_t)(g->c.ostreams - 1));
}

static void send_request(int ci, uint64_t due, uint64_t now)
{
    gconn_t *g = &G.conns[ci];
    uint64_t seq = G.seq++;
    uint32_t e2e = G.e2e_base + (uint32_t)seq;
    slot_t *sl = &G.slots[seq & SLOT_MASK];
    if (sl->state == SLOT_OUT) {
        /* 1M requests later still unanswered: it is lost, count it so. */
        G.outstanding--;
        G.overrun += sl->measured;
    }
    uint64_t k = g->nreq++;
    uint64_t session = k / (uint64_t)opt.session_len;
    uint32_t num = (uint32_t)(k % (uint64_t)opt.session_len);
    uint32_t type = num == 0 ? 1 : (num + 1 == (uint32_t)opt.session_len ? 3 : 2);
    char sid[192];
    int sid_len = snprintf(sid, sizeof sid, "%s;%u;%llu", g->host, G.run_id,
                           (unsigned long long)session);
    uint32_t hbh = g->next_hbh++;

    size_t s = conn_begin(&g->c, session_stream(g, session), FLAG_R | FLAG_P, CMD_CC, opt.app,
                          hbh, e2e);
    avp_put(&g->c.out, AVP_SESSION_ID, sid, (size_t)sid_len);
    avp_u32(&g->c.out, AVP_AUTH_APP_ID, opt.app);
    put_identity(g);
    avp_str(&g->c.out, AVP_DEST_REALM, opt.dest_realm);
    avp_u32(&g->c.out, AVP_CC_REQUEST_TYPE, type);
    avp_u32(&g->c.out, AVP_CC_REQUEST_NUMBER, num);
    msg_end(&g->c.out, s);

    *sl = (slot_t){.due = due, .e2e = e2e, .hbh = hbh, .conn = (uint16_t)ci, .state = SLOT_OUT,
                   .measured = due >= G.t_meas0 && due < G.t_meas1 &&
                               (opt.rate > 0 || G.phase < 2)};
    G.sent += sl->measured;
    G.outstanding++;
    if (now > due && now - due > G.max_send_lag)
        G.max_send_lag = now - due;
}

static void on_answer(int ci, const dmsg_t *m, uint64_t now)
{
    slot_t *sl = &G.slots[(m->e2e - G.e2e_base) & SLOT_MASK];
    if (sl->e2e != m->e2e || sl->state == SLOT_FREE || m->cmd != CMD_CC || sl->hbh != m->hbh ||
        sl->conn != ci) {
        G.mismatches++;
        return;
    }
    if (sl->state == SLOT_DONE) {
        G.duplicates++;
        return;
    }
    sl->state = SLOT_DONE;
    G.outstanding--;
    if (G.phase >= 3) {
        G.late++;
        return;
    }
    uint32_t rc = 0;
    avp_find_u32(m, AVP_RESULT_CODE, &rc);
    if (G.phase == 1) {
        G.window_answers++;
        G.window_ok += rc == DIAMETER_SUCCESS;
    }
    if (sl->measured) {
        count_code(rc);
        G.answered++;
        int cls = rc == DIAMETER_SUCCESS ? LAT_OK : rc == DIAMETER_TOO_BUSY ? LAT_BUSY : LAT_OTHER;
        push_latency(&G.lat[LAT_ALL], now - sl->due);
        push_latency(&G.lat[cls], now - sl->due);
    }
    if (opt.closed && G.phase < 2)
        send_request(ci, now, now);
}

static int handle_input(int ci, uint64_t now)
{
    gconn_t *g = &G.conns[ci];
    size_t off = 0;
    for (;;) {
        dmsg_t m;
        long n = msg_parse(g->c.in.p + off, g->c.in.len - off, &m);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        off += (size_t)n;
        if (m.flags & FLAG_R)
            answer_peer_request(g, &m); /* DWR, DPR from the relay */
        else if (m.cmd == CMD_DP)
            g->dpa = 1;
        else if (m.cmd != CMD_DW && m.cmd != CMD_CE)
            on_answer(ci, &m, now);
    }
    buf_consume(&g->c.in, off);
    return 0;
}

/* ---- connection set-up: blocking CER/CEA, then non-blocking ---- */

static void handshake(int ci)
{
    gconn_t *g = &G.conns[ci];
    int fd = sock_new(opt.sctp);
    struct timeval tv = {15, 0}; /* an overloaded relay may be slow to take a new peer */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = sock_addr(opt.ip, opt.port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    conn_init(&g->c, fd, opt.sctp);
    snprintf(g->host, sizeof g->host, "gen-%d.%s", ci + 1, opt.realm);
    g->next_hbh = (uint32_t)ci << 24;
    send_cer(g);
    if (conn_flush(&g->c) < 0 || g->c.out.len)
        die("sending CER");
    for (;;) {
        if (conn_read(&g->c) <= 0)
            die("waiting for CEA");
        dmsg_t m;
        long n = msg_parse(g->c.in.p, g->c.in.len, &m);
        if (n < 0) {
            fprintf(stderr, "diam_load: not Diameter from the peer\n");
            exit(2);
        }
        if (n == 0)
            continue;
        uint32_t rc = 0;
        if (m.cmd != CMD_CE || (m.flags & FLAG_R) || avp_find_u32(&m, AVP_RESULT_CODE, &rc) ||
            rc != DIAMETER_SUCCESS) {
            fprintf(stderr, "diam_load: conn %d: CER refused (command %u, result %u)\n", ci + 1,
                    m.cmd, rc);
            exit(2);
        }
        buf_consume(&g->c.in, (size_t)n);
        break;
    }
    set_nonblock(fd);
}

/* ---- main loop ---- */

static void mark_phase(uint64_t now)
{
    if (G.phase == 0 && now >= G.t_meas0) {
        G.phase = 1;
        G.w0 = now;
        G.cpu0 = cpu_seconds();
        fputs("MEASURE_START\n", stderr);
    }
    if (G.phase == 1 && now >= G.t_meas1) {
        G.phase = 2;
        G.w1 = now;
        G.cpu1 = cpu_seconds();
        fputs("MEASURE_END\n", stderr);
    }
}

static void send_due(uint64_t now)
{
    /* Capped per wake-up so a generator that fell behind still reads answers. What
     * fell due before the window's end is sent even if the wake-up comes after it. */
    for (int burst = 0; burst < 1024; burst++) {
        uint64_t due = G.t_start + (uint64_t)((double)G.rr * 1e9 / opt.rate);
        if (due > now || due >= G.t_meas1)
            return;
        send_request((int)(G.rr++ % (uint64_t)opt.nconns), due, now);
    }
}

static int flush_all(int ep)
{
    for (int i = 0; i < opt.nconns; i++) {
        conn_t *c = &G.conns[i].c;
        if (c->out.len && conn_flush(c) < 0)
            return -1;
        int want = c->out.len > 0;
        if (want != c->want_out) {
            struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            c->want_out = want;
        }
    }
    return 0;
}

static int poll_once(int ep, int tfd, int timeout_ms)
{
    struct epoll_event evs[MAX_CONNS + 1];
    int n = epoll_wait(ep, evs, MAX_CONNS + 1, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait");
    uint64_t now = now_ns();
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u32 == (uint32_t)TIMER_TAG) {
            uint64_t ticks;
            if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                die("timerfd read");
            continue;
        }
        int ci = (int)evs[i].data.u32;
        if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            continue;
        /* TCP: one big read holds the whole burst; SCTP: a batch, a message a read. */
        conn_t *c = &G.conns[ci].c;
        long r;
        if (!c->sctp) {
            r = conn_read(c);
            if (r > 0 && handle_input(ci, now) < 0)
                return -1;
        } else {
            int got = sctp_rx_read(c->fd);
            r = got < 0 ? -1 : 0;
            for (int k = 0; k < got && r >= 0; k++) {
                r = sctp_rx_take(c, k);
                if (r > 0 && handle_input(ci, now) < 0)
                    return -1;
            }
        }
        if (r < 0) {
            if (G.phase < 3)
                fprintf(stderr, "diam_load: conn %d closed by the peer\n", ci + 1);
            return -1;
        }
    }
    return flush_all(ep);
}

static int run(int ep, int tfd)
{
    for (;;) {
        uint64_t now = now_ns();
        mark_phase(now);
        if (opt.rate > 0)
            send_due(now); /* by due time: also what fell due at the window's end */
        if (G.phase == 2 && (G.outstanding == 0 || now >= G.t_meas1 + (uint64_t)(opt.timeout * 1e9)))
            return 0;
        if (flush_all(ep) < 0)
            return -1;
        uint64_t next = G.phase == 0 ? G.t_meas0 : G.t_meas1;
        int ms = G.phase < 2 && next > now ? (int)((next - now) / 1000000 + 1) : 5;
        if (poll_once(ep, tfd, ms < 5 ? ms : 5) < 0)
            return -1;
    }
}

static void say_goodbye(int ep, int tfd)
{
    G.phase = 3;
    for (int i = 0; i < opt.nconns; i++)
        send_dpr(&G.conns[i]);
    uint64_t until = now_ns() + 1000000000ull;
    while (now_ns() < until) {
        int all = 1;
        for (int i = 0; i < opt.nconns; i++)
            all &= G.conns[i].dpa;
        if (all || poll_once(ep, tfd, 10) < 0)
            break;
    }
}

/* ---- report ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(const lat_t *l, double q)
{
    if (!l->n)
        return 0;
    size_t rank = (size_t)ceil(q * (double)l->n); /* nearest-rank percentile */
    return (double)l->v[rank ? rank - 1 : 0] / 1e3;
}

/* {"p50":..,"p99":..,"p999":..,"max":..,"mean":..} of one sorted class, in us. */
static void print_latency(const lat_t *l)
{
    double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += (double)l->v[i];
    printf("{\"n\":%zu,\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
           l->n, pct_us(l, 0.5), pct_us(l, 0.99), pct_us(l, 0.999),
           l->n ? (double)l->v[l->n - 1] / 1e3 : 0.0, l->n ? sum / (double)l->n / 1e3 : 0.0);
}

static void report(void)
{
    for (int i = 0; i < LAT_CLASSES; i++)
        qsort(G.lat[i].v, G.lat[i].n, sizeof *G.lat[i].v, cmp_u64);
    double window = (double)(G.w1 - G.w0) / 1e9;
    double cpu = G.cpu1 - G.cpu0;
    printf("{\"tool\":\"diam_load\",\"transport\":\"%s\",\"mode\":\"%s\",\"inflight\":%d,"
           "\"rate\":%.1f,\"conns\":%d,\"warmup_s\":%.3f,\"duration_s\":%.3f,"
           "\"sent\":%llu,\"answered\":%llu,\"timeouts\":%llu,\"late\":%llu,"
           "\"mismatches\":%llu,\"duplicates\":%llu,\"result_codes\":{",
           opt.sctp ? "sctp" : "tcp", opt.closed ? "closed" : "open", opt.closed, opt.rate,
           opt.nconns, opt.warmup, window, (unsigned long long)G.sent,
           (unsigned long long)G.answered, (unsigned long long)(G.sent - G.answered),
           (unsigned long long)G.late, (unsigned long long)G.mismatches,
           (unsigned long long)G.duplicates);
    for (int i = 0; i < G.ncodes; i++)
        printf("%s\"%u\":%u", i ? "," : "", G.codes[i][0], G.codes[i][1]);
    printf("},\"throughput\":%.1f,\"goodput\":%.1f,\"latency_us\":",
           window > 0 ? (double)G.window_answers / window : 0.0,
           window > 0 ? (double)G.window_ok / window : 0.0);
    print_latency(&G.lat[LAT_ALL]);
    printf(",\"latency_by_code_us\":{");
    for (int i = LAT_OK; i < LAT_CLASSES; i++) {
        printf("%s\"%s\":", i > LAT_OK ? "," : "", lat_names[i]);
        print_latency(&G.lat[i]);
    }
    int rcvbuf = 0;
    socklen_t len = sizeof rcvbuf;
    getsockopt(G.conns[0].c.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len);
    printf("},\"max_send_lag_us\":%.1f,\"cpu_s\":%.4f,\"cpu_us_per_req\":%.3f,"
           "\"rcvbuf\":%d}\n",
           (double)G.max_send_lag / 1e3, cpu,
           G.window_answers ? cpu * 1e6 / (double)G.window_answers : 0.0, rcvbuf);
}

/* ---- arguments ---- */

static void usage(void)
{
    fputs("usage: diam_load --connect IP --port N [--sctp] [--conns C]\n"
          "                 (--closed N | --rate R) [--duration S] [--warmup S] [--timeout S]\n"
          "                 [--origin-realm R] [--dest-realm R] [--session-len K] [--app ID]\n"
          "                 [--tick-us U]\n",
          stderr);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--sctp")) { opt.sctp = 1; continue; }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--connect")) opt.ip = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--conns")) opt.nconns = atoi(v);
        else if (!strcmp(a, "--closed")) opt.closed = atoi(v);
        else if (!strcmp(a, "--rate")) opt.rate = atof(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--timeout")) opt.timeout = atof(v);
        else if (!strcmp(a, "--origin-realm")) opt.realm = v;
        else if (!strcmp(a, "--dest-realm")) opt.dest_realm = v;
        else if (!strcmp(a, "--session-len")) opt.session_len = atoi(v);
        else if (!strcmp(a, "--app")) opt.app = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--tick-us")) opt.tick_us = atof(v);
        else usage();
    }
    if ((opt.closed > 0) == (opt.rate > 0) || opt.nconns < 1 || opt.nconns > MAX_CONNS ||
        (opt.closed && opt.closed < opt.nconns) || opt.session_len < 1 || opt.duration <= 0 ||
        opt.tick_us < 1)
        usage();
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    G.slots = calloc(1u << SLOT_BITS, sizeof *G.slots);
    if (!G.slots)
        die("calloc");
    G.run_id = (uint32_t)time(NULL);
    /* RFC 6733: high 12 bits of the end-to-end id from the clock, the rest counts. */
    G.e2e_base = (G.run_id & 0xfff) << 20;

    int ep = epoll_create1(0);
    for (int i = 0; i < opt.nconns; i++) {
        handshake(i);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, G.conns[i].c.fd, &ev);
    }
    G.t_start = now_ns();
    G.t_meas0 = G.t_start + (uint64_t)(opt.warmup * 1e9);
    G.t_meas1 = G.t_meas0 + (uint64_t)(opt.duration * 1e9);
    /* Messages that arrived with the CEA (a relay's first DWR) are handled now. */
    for (int i = 0; i < opt.nconns; i++)
        handle_input(i, G.t_start);

    int tfd = -1;
    if (opt.rate > 0) {
        /* Wake-ups at the request interval (at least --tick-us apart); each sends all due. */
        long iv = (long)(1e9 / opt.rate), floor_ns = (long)(opt.tick_us * 1000);
        iv = iv < floor_ns ? floor_ns : iv;
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        struct itimerspec its = {{iv / 1000000000, iv % 1000000000}, {0, 1}};
        timerfd_settime(tfd, 0, &its, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)TIMER_TAG};
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    } else {
        for (int i = 0; i < opt.nconns; i++) {
            int share = opt.closed / opt.nconns + (i < opt.closed % opt.nconns);
            for (int k = 0; k < share; k++)
                send_request(i, G.t_start, G.t_start);
        }
    }
    int rc = run(ep, tfd);
    if (G.phase == 0) { /* failed before measuring: report an empty window */
        G.w0 = now_ns();
        G.cpu0 = cpu_seconds();
    }
    if (G.phase < 2) {
        G.w1 = now_ns();
        G.cpu1 = cpu_seconds();
        G.phase = 2;
    }
    say_goodbye(ep, tfd);
    report();
    return rc < 0 ? 1 : 0;
}
