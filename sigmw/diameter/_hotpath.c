/*
 * The relay's usual request and usual answer in C (part of sigmw.diameter._speedups).
 *
 * relay.Relay.on_request and on_answer stay the reference. RelayHot.request and
 * RelayHot.answer take only the usual case and leave the same state and return the same
 * sends as the Python code would; for anything else they return None before touching
 * any state, and the Python code runs instead:
 *
 *   request: well formed, proxiable, with a Destination-Realm, not from us, not for us
 *            (Destination-Host), not looped (Route-Record), a command already counted;
 *            a Destination-Host naming a peer that can take it (up, under its pending
 *            bound, not the origin), or else a cached route rule with such a peer at
 *            some priority and the origin at none of the priorities tried (the choice
 *            is RealmTable.choose's: the best such level, the same weighted rendezvous
 *            among its usable peers); and a Session-Id when the chosen peer has streams;
 *   answer:  the header's length right, the hop-by-hop id pending on the peer it came
 *            from, no E bit when redirects are followed, the client still open, a
 *            (command, result) already counted, and a Session-Id when it has streams.
 *
 * Pending and Peer are the relay's records as C structs (Python sees their fields as
 * attributes), so that both paths share one pending table and one set of peers.
 *
 * Why C: the Python of those two methods was about 70% of the CPU of a relayed request +
 * answer (docs/benchmark.md).
 */
#include "_speedups.h" /* first: Python.h */

#include <math.h>
#include <stddef.h>
#include <string.h>
#include <structmember.h>

/* --- CRC-32 (zlib's: reflected polynomial 0xEDB88320), for session -> stream --------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

uint32_t sigmw_crc32(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n-- > 0)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* routing.streams.session_stream for a bytes key and more than one outbound stream. */
static long session_stream(PyObject *key, int outbound)
{
    uint32_t c = sigmw_crc32((const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    return (long)(c % (uint32_t)(outbound - 1)) + 1;
}

static PyObject *crc32_py(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "crc32() takes bytes");
        return NULL;
    }
    return PyLong_FromUnsignedLong(
        sigmw_crc32((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
}

/* --- Pending: relay._Pending ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *origin;  /* str */
    PyObject *target;  /* str */
    PyObject *request; /* bytes */
    PyObject *meta;    /* wire.Scanned */
    double deadline;
    double received;
    unsigned int origin_hbh;
    char resent;
    char redirected;
} Pending;

static PyMemberDef pending_members[] = {
    {"origin", T_OBJECT_EX, offsetof(Pending, origin), 0, "Peer the request came from."},
    {"origin_hbh", T_UINT, offsetof(Pending, origin_hbh), 0, "Its hop-by-hop id there."},
    {"target", T_OBJECT_EX, offsetof(Pending, target), 0, "Peer it was sent to."},
    {"request", T_OBJECT_EX, offsetof(Pending, request), 0, "The bytes as forwarded."},
    {"meta", T_OBJECT_EX, offsetof(Pending, meta), 0, "What the router read."},
    {"deadline", T_DOUBLE, offsetof(Pending, deadline), 0, "When Tx expires."},
    {"received", T_DOUBLE, offsetof(Pending, received), 0, "When the request arrived."},
    {"resent", T_BOOL, offsetof(Pending, resent), 0, "Already re-sent once."},
    {"redirected", T_BOOL, offsetof(Pending, redirected), 0, "A redirect was followed."},
    {NULL},
};

static int pending_init(Pending *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"origin",   "origin_hbh", "target",     "request", "meta",
                            "deadline", "received",   "resent", "redirected", NULL};
    PyObject *origin, *target, *request, *meta;
    unsigned long hbh;
    int resent = 0, redirected = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OkOOOdd|pp", names, &origin, &hbh, &target,
                                     &request, &meta, &self->deadline, &self->received, &resent,
                                     &redirected))
        return -1;
    self->origin_hbh = (unsigned int)hbh;
    Py_XSETREF(self->origin, Py_NewRef(origin));
    Py_XSETREF(self->target, Py_NewRef(target));
    Py_XSETREF(self->request, Py_NewRef(request));
    Py_XSETREF(self->meta, Py_NewRef(meta));
    self->resent = (char)resent;
    self->redirected = (char)redirected;
    return 0;
}

static void pending_dealloc(Pending *self)
{
    Py_XDECREF(self->origin);
    Py_XDECREF(self->target);
    Py_XDECREF(self->request);
    Py_XDECREF(self->meta);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject PendingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sigmw.diameter._speedups.Pending",
    .tp_doc = "relay._Pending: a relayed request waiting for its answer.",
    .tp_basicsize = sizeof(Pending),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pending_init,
    .tp_dealloc = (destructor)pending_dealloc,
    .tp_members = pending_members,
};

/* --- Peer: relay._Peer ----------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *host;         /* bytes, lower-cased */
    PyObject *route_record; /* bytes: the Route-Record AVP naming the peer */
    Py_ssize_t pending;
    int outbound;
    char usable;
} Peer;

static PyMemberDef peer_members[] = {
    {"host", T_OBJECT_EX, offsetof(Peer, host), 0, "Origin-Host, lower-cased."},
    {"outbound", T_INT, offsetof(Peer, outbound), 0, "Negotiated outbound streams."},
    {"usable", T_BOOL, offsetof(Peer, usable), 0, "False while the watchdog says SUSPECT/DOWN."},
    {"pending", T_PYSSIZET, offsetof(Peer, pending), 0, "Requests in flight to this peer."},
    {"route_record", T_OBJECT_EX, offsetof(Peer, route_record), 0, "Route-Record naming it."},
    {NULL},
};

static int peer_init(Peer *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"host", "outbound", "usable", "pending", "route_record", NULL};
    PyObject *host, *record = NULL;
    int usable = 1;
    self->pending = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|pnO", names, &host, &self->outbound, &usable,
                                     &self->pending, &record))
        return -1;
    Py_XSETREF(self->host, Py_NewRef(host));
    Py_XSETREF(self->route_record, record ? Py_NewRef(record) : PyBytes_FromStringAndSize("", 0));
    self->usable = (char)usable;
    return self->route_record == NULL ? -1 : 0;
}

static void peer_dealloc(Peer *self)
{
    Py_XDECREF(self->host);
    Py_XDECREF(self->route_record);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject PeerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sigmw.diameter._speedups.Peer",
    .tp_doc = "relay._Peer: an open peer as the relay sees it.",
    .tp_basicsize = sizeof(Peer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)peer_init,
    .tp_dealloc = (destructor)peer_dealloc,
    .tp_members = peer_members,
};

/* --- RelayHot ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *pending;  /* dict: hop-by-hop id -> Pending (Relay._pending) */
    PyObject *peers;    /* dict: name -> Peer (Relay.peers) */
    PyObject *cache;    /* RealmTable.cache: (realm, app, origin realm) -> rule or None */
    PyObject *requests; /* dict: command -> count (Relay.requests) */
    PyObject *answers;  /* dict: (command, result, source) -> count (Relay.answers) */
    PyObject *latency;  /* core.histogram.Histogram (Relay.latency) */
    PyObject *send;     /* relay.Send */
    PyObject *me;       /* bytes: our Origin-Host, lower-cased */
    PyObject *by_host;  /* dict: Origin-Host lower-cased -> peer name (Relay._by_host) */
    double tx;          /* request timeout, seconds */
    Py_ssize_t max_pending;
    unsigned long long relayed_requests, relayed_answers;
    unsigned long long in_c, to_python; /* messages Direct (_direct.c) took, handed back */
    unsigned int next_hbh;
    int follow; /* redirects are followed: an answer with the E bit takes the Python way */
} RelayHot;

static PyObject *s_tiers, *s_counts, *s_bounds, *s_sum, *s_total, *s_relayed, *minus_one;

static PyMemberDef hot_members[] = {
    {"next_hbh", T_UINT, offsetof(RelayHot, next_hbh), 0, "The next hop-by-hop id to use."},
    {"cache", T_OBJECT_EX, offsetof(RelayHot, cache), 0, "The routing table's rule cache."},
    {"by_host", T_OBJECT, offsetof(RelayHot, by_host), 0,
     "Peers by Origin-Host, lower-cased (Relay._by_host): Destination-Host routing."},
    {"relayed_requests", T_ULONGLONG, offsetof(RelayHot, relayed_requests), READONLY,
     "Requests relayed here."},
    {"relayed_answers", T_ULONGLONG, offsetof(RelayHot, relayed_answers), READONLY,
     "Answers relayed here."},
    {"hot_path_in_c", T_ULONGLONG, offsetof(RelayHot, in_c), READONLY,
     "Messages the endpoints' Direct relayed in C from read to held send."},
    {"hot_path_to_python", T_ULONGLONG, offsetof(RelayHot, to_python), READONLY,
     "Messages the endpoints' Direct handed to the Python path."},
    {NULL},
};

static int hot_init(RelayHot *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"pending", "peers",   "cache",       "requests", "answers", "latency",
                            "send",    "me",      "tx",          "max_pending",
                            "first_hbh", "follow_redirects", NULL};
    PyObject *pending, *peers, *cache, *requests, *answers, *latency, *send, *me;
    unsigned long first;
    int follow;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!O!O!O!OOSdnkp", names, &PyDict_Type, &pending,
                                     &PyDict_Type, &peers, &PyDict_Type, &cache, &PyDict_Type,
                                     &requests, &PyDict_Type, &answers, &latency, &send, &me,
                                     &self->tx, &self->max_pending, &first, &follow))
        return -1;
    Py_XSETREF(self->pending, Py_NewRef(pending));
    Py_XSETREF(self->peers, Py_NewRef(peers));
    Py_XSETREF(self->cache, Py_NewRef(cache));
    Py_XSETREF(self->requests, Py_NewRef(requests));
    Py_XSETREF(self->answers, Py_NewRef(answers));
    Py_XSETREF(self->latency, Py_NewRef(latency));
    Py_XSETREF(self->send, Py_NewRef(send));
    Py_XSETREF(self->me, Py_NewRef(me));
    self->next_hbh = (unsigned int)first;
    self->follow = follow;
    return 0;
}

static void hot_dealloc(RelayHot *self)
{
    Py_XDECREF(self->pending);
    Py_XDECREF(self->peers);
    Py_XDECREF(self->cache);
    Py_XDECREF(self->requests);
    Py_XDECREF(self->answers);
    Py_XDECREF(self->latency);
    Py_XDECREF(self->send);
    Py_XDECREF(self->me);
    Py_XDECREF(self->by_host);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* dict[key] += 1 for a count known to be there. */
static int bump(PyObject *dict, PyObject *key, PyObject *count)
{
    PyObject *more = PyLong_FromSsize_t(PyLong_AsSsize_t(count) + 1);
    if (more == NULL)
        return -1;
    int rc = PyDict_SetItem(dict, key, more);
    Py_DECREF(more);
    return rc;
}

/* bytes.lower() == lower, for ASCII (as bytes.lower() maps lead A-Z). */
static int equals_lowered(PyObject *value, PyObject *lower)
{
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    if (n != PyBytes_GET_SIZE(lower))
        return 0;
    const unsigned char *a = (const unsigned char *)PyBytes_AS_STRING(value);
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(lower);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = a[i] >= 'A' && a[i] <= 'Z' ? a[i] + 32 : a[i];
        if (c != b[i])
            return 0;
    }
    return 1;
}

/* The Peer named `name`, borrowed; NULL (no error set) when there is none. */
static Peer *peer_named(RelayHot *self, PyObject *name)
{
    PyObject *peer = PyDict_GetItemWithError(self->peers, name);
    return peer != NULL && Py_IS_TYPE(peer, &PeerType) ? (Peer *)peer : NULL;
}

/* Histogram.observe: bisect_left over bounds, then counts, sum and total. */
static int observe(PyObject *hist, double value)
{
    PyObject *bounds = PyObject_GetAttr(hist, s_bounds);
    PyObject *counts = bounds ? PyObject_GetAttr(hist, s_counts) : NULL;
    PyObject *sum = counts ? PyObject_GetAttr(hist, s_sum) : NULL;
    PyObject *total = sum ? PyObject_GetAttr(hist, s_total) : NULL;
    int rc = -1;
    if (total == NULL || !PyTuple_Check(bounds) || !PyList_Check(counts))
        goto done;
    Py_ssize_t lo = 0, hi = PyTuple_GET_SIZE(bounds);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        double bound = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, mid));
        if (bound < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= PyList_GET_SIZE(counts))
        goto done;
    PyObject *n = PyLong_FromSsize_t(PyLong_AsSsize_t(PyList_GET_ITEM(counts, lo)) + 1);
    PyObject *s = PyFloat_FromDouble(PyFloat_AsDouble(sum) + value);
    PyObject *t = PyLong_FromSsize_t(PyLong_AsSsize_t(total) + 1);
    if (n != NULL && s != NULL && t != NULL && PyList_SetItem(counts, lo, Py_NewRef(n)) == 0 &&
        PyObject_SetAttr(hist, s_sum, s) == 0 && PyObject_SetAttr(hist, s_total, t) == 0)
        rc = 0;
    Py_XDECREF(n);
    Py_XDECREF(s);
    Py_XDECREF(t);
done:
    Py_XDECREF(bounds);
    Py_XDECREF(counts);
    Py_XDECREF(sum);
    Py_XDECREF(total);
    if (rc < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "latency is not a Histogram");
    return rc;
}

/* [Send(peer, msg, stream)]; steals msg. */
static PyObject *one_send(RelayHot *self, PyObject *peer, PyObject *msg, long stream)
{
    PyObject *s = PyLong_FromLong(stream);
    if (s == NULL || msg == NULL) {
        Py_XDECREF(s);
        Py_XDECREF(msg);
        return NULL;
    }
    PyObject *args[3] = {peer, msg, s};
    PyObject *send = PyObject_Vectorcall(self->send, args, 3, NULL);
    Py_DECREF(s);
    Py_DECREF(msg);
    if (send == NULL)
        return NULL;
    PyObject *out = PyList_New(1);
    if (out == NULL) {
        Py_DECREF(send);
        return NULL;
    }
    PyList_SET_ITEM(out, 0, send);
    return out;
}

/* routing.diameter._mix: splitmix64's finaliser. */
static uint64_t mix64(uint64_t x)
{
    x *= 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 32);
}

#define MAX_SHARES 16

/*
 * One priority level of a rule's `tiers` ((peer, crc32 of the name, weight) each), as
 * RealmTable.choose takes it: 1 and *chosen (borrowed from the rule) when some of its
 * peers are usable and under the pending bound (the one routing.diameter._rendezvous
 * picks among them, for the session key: the Session-Id, else the end-to-end id); 0 when
 * none is (the next level's turn); -1 for the Python way (the request's origin is there,
 * which choose excludes; more than MAX_SHARES peers; or an error, then set). The
 * arithmetic is the Python's, in the same IEEE doubles, so both pick the same peer.
 */
static int level_choice(RelayHot *self, PyObject *level, PyObject *origin, PyObject *session,
                        const unsigned char *d, PyObject **chosen)
{
    Py_ssize_t n = PyTuple_Check(level) ? PyTuple_GET_SIZE(level) : 0;
    if (n < 1 || n > MAX_SHARES)
        return -1;
    PyObject *ready[MAX_SHARES];
    uint64_t crcs[MAX_SHARES];
    double weights[MAX_SHARES];
    int k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *target = PyTuple_GET_ITEM(level, i);
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) != 3)
            return -1;
        PyObject *name = PyTuple_GET_ITEM(target, 0);
        if (PyObject_RichCompareBool(name, origin, Py_EQ) != 0)
            return -1; /* excluded there: Python's (or a failed compare) */
        Peer *peer = peer_named(self, name);
        if (peer == NULL && PyErr_Occurred())
            return -1;
        if (peer == NULL || !peer->usable || peer->pending >= self->max_pending)
            continue;
        crcs[k] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(target, 1));
        weights[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(target, 2));
        if (PyErr_Occurred())
            return -1;
        ready[k++] = name;
    }
    if (k < 2) {
        *chosen = k ? ready[0] : NULL;
        return k;
    }
    uint32_t base = PyBytes_Check(session) && PyBytes_GET_SIZE(session)
                        ? sigmw_crc32((const unsigned char *)PyBytes_AS_STRING(session),
                                      PyBytes_GET_SIZE(session))
                        : sigmw_crc32(d + 16, 4);
    double best_score = -1.0;
    *chosen = ready[0];
    for (int j = 0; j < k; j++) {
        uint64_t x = mix64((uint64_t)base ^ (crcs[j] << 32));
        double h = (double)((x >> 11) + 1) / 9007199254740993.0;
        double score = weights[j] / -log(h);
        if (score > best_score)
            *chosen = ready[j], best_score = score;
    }
    return 1;
}

/* A Diameter identity (bytes, or None: 0) that is ours, as `value.lower() == me`. */
static int names_me(RelayHot *self, PyObject *value)
{
    return value != Py_None && (!PyBytes_Check(value) || equals_lowered(value, self->me));
}

/* The peer a Destination-Host names (Relay._by_host), when it is not the origin and is up
 * and under its pending bound: borrowed from by_host. NULL otherwise (an error only if a
 * lookup failed). */
static PyObject *named_peer(RelayHot *self, PyObject *host, PyObject *origin)
{
    if (self->by_host == NULL || !PyDict_Check(self->by_host) || !PyBytes_Check(host))
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(host);
    PyObject *lower = PyBytes_FromStringAndSize(NULL, n);
    if (lower == NULL)
        return NULL;
    const unsigned char *from = (const unsigned char *)PyBytes_AS_STRING(host);
    unsigned char *to = (unsigned char *)PyBytes_AS_STRING(lower);
    for (Py_ssize_t i = 0; i < n; i++) /* bytes.lower(): ASCII A-Z only */
        to[i] = from[i] >= 'A' && from[i] <= 'Z' ? from[i] + 32 : from[i];
    PyObject *name = PyDict_GetItemWithError(self->by_host, lower);
    Py_DECREF(lower);
    if (name == NULL || PyObject_RichCompareBool(name, origin, Py_EQ) != 0)
        return NULL; /* not a peer of ours, or the origin (excluded): the route's turn */
    Peer *peer = peer_named(self, name);
    if (peer == NULL || !peer->usable || peer->pending >= self->max_pending)
        return NULL;
    return name;
}

/* RealmTable.choose on a cached rule: the peer (borrowed from the rule), or NULL for the
 * Python way (no level had a usable peer: its NoPeer answer is Python's; or level_choice
 * said so; an error is then set). */
static PyObject *choice_of(RelayHot *self, PyObject *rule, PyObject *origin, PyObject *session,
                           const unsigned char *d)
{
    PyObject *tiers = PyObject_GetAttr(rule, s_tiers);
    if (tiers == NULL)
        return NULL;
    Py_DECREF(tiers); /* the rule keeps it */
    Py_ssize_t n = PyTuple_Check(tiers) ? PyTuple_GET_SIZE(tiers) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *chosen = NULL;
        int rc = level_choice(self, PyTuple_GET_ITEM(tiers, i), origin, session, d, &chosen);
        if (rc != 0)
            return rc > 0 ? chosen : NULL;
    }
    return NULL;
}

#define FALL_BACK() do { if (PyErr_Occurred()) goto error; goto python; } while (0)

/* RelayHot.request's work, without the Send (see _speedups.h). */
int sigmw_hot_request(PyObject *hot, PyObject *origin, PyObject *data, double now,
                      PyObject **peer_out, PyObject **msg_out, long *stream_out)
{
    RelayHot *self = (RelayHot *)hot;
    PyObject *meta = sigmw_scan(data), *rule_key = NULL;
    if (meta == NULL)
        return -1;
    if (meta == Py_None)
        goto python; /* malformed: the Python scan names what is wrong */
    PyObject *header = PyTuple_GET_ITEM(meta, 0);
    PyObject *session = PyTuple_GET_ITEM(meta, 1), *realm = PyTuple_GET_ITEM(meta, 2);
    PyObject *dhost = PyTuple_GET_ITEM(meta, 3), *ohost = PyTuple_GET_ITEM(meta, 4);
    PyObject *orealm = PyTuple_GET_ITEM(meta, 5), *records = PyTuple_GET_ITEM(meta, 6);
    PyObject *command = PyTuple_GET_ITEM(header, 3), *app = PyTuple_GET_ITEM(header, 4);
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    /* What Relay._check would refuse (3007, 3005, 5005, 3002) is Python's to answer. */
    if (!(d[4] & FLAG_PROXIABLE) || realm == Py_None || names_me(self, ohost) ||
        names_me(self, dhost))
        goto python;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(records); i++)
        if (names_me(self, PyTuple_GET_ITEM(records, i)))
            goto python; /* a loop */
    PyObject *count = PyDict_GetItemWithError(self->requests, command);
    if (count == NULL)
        FALL_BACK();
    /* Relay._choose: the peer Destination-Host names if it can take it, else the route. */
    PyObject *lead = dhost == Py_None ? NULL : named_peer(self, dhost, origin);
    if (lead == NULL && PyErr_Occurred())
        goto error;
    if (lead == NULL) {
        rule_key = PyTuple_Pack(3, realm, app, orealm);
        if (rule_key == NULL)
            goto error;
        PyObject *rule = PyDict_GetItemWithError(self->cache, rule_key);
        if (rule == NULL || rule == Py_None)
            FALL_BACK();
        lead = choice_of(self, rule, origin, session, d); /* the rule keeps it */
        if (lead == NULL)
            FALL_BACK();
    }
    if (!PyUnicode_Check(lead))
        goto python;
    Peer *target = peer_named(self, lead);
    if (target == NULL || !target->usable || target->pending >= self->max_pending)
        FALL_BACK();
    Peer *from = peer_named(self, origin);
    if (from == NULL || !PyBytes_Check(from->route_record))
        FALL_BACK();
    if (target->outbound > 1 && !PyBytes_Check(session))
        goto python; /* sessionless: the spreader's turn, in Python */
    long stream = target->outbound > 1 ? session_stream(session, target->outbound) : 0;
    Py_INCREF(lead); /* a reload may drop the rule while the send is made */
    /* target and from stay borrowed: until their last use below nothing can run Python
     * code (no GC-tracked object is made before one_send). */

    /* The usual request: from here on, what Relay.on_request does. */
    if (bump(self->requests, command, count) < 0)
        goto error_only;
    unsigned int hbh = self->next_hbh++;
    Py_ssize_t len = PyBytes_GET_SIZE(data), rlen = PyBytes_GET_SIZE(from->route_record);
    PyObject *msg = PyBytes_FromStringAndSize(NULL, len + rlen);
    if (msg == NULL)
        goto error_only;
    unsigned char *m = (unsigned char *)PyBytes_AS_STRING(msg);
    memcpy(m, d, len);
    memcpy(m + len, PyBytes_AS_STRING(from->route_record), rlen);
    size_t size = (size_t)(len + rlen);
    m[1] = (unsigned char)(size >> 16), m[2] = (unsigned char)(size >> 8), m[3] = (unsigned char)size;
    m[12] = (unsigned char)(hbh >> 24), m[13] = (unsigned char)(hbh >> 16);
    m[14] = (unsigned char)(hbh >> 8), m[15] = (unsigned char)hbh;
    Pending *p = PyObject_New(Pending, &PendingType);
    if (p == NULL) {
        Py_DECREF(msg);
        goto error_only;
    }
    p->origin = Py_NewRef(origin);
    p->target = Py_NewRef(lead);
    p->request = Py_NewRef(msg);
    p->meta = Py_NewRef(meta);
    p->deadline = now + self->tx;
    p->received = now;
    p->origin_hbh = be32(d + 12);
    p->resent = p->redirected = 0;
    PyObject *key = PyLong_FromUnsignedLong(hbh);
    int rc = key == NULL ? -1 : PyDict_SetItem(self->pending, key, (PyObject *)p);
    Py_XDECREF(key);
    Py_DECREF(p);
    if (rc < 0) {
        Py_DECREF(msg);
        goto error_only;
    }
    target->pending++;
    self->relayed_requests++;
    *peer_out = lead, *msg_out = msg, *stream_out = stream;
    Py_XDECREF(rule_key); /* none when Destination-Host chose */
    Py_DECREF(meta);
    return 1;

error_only:
    Py_DECREF(lead);
error:
    Py_XDECREF(rule_key);
    Py_DECREF(meta);
    return -1;
python:
    Py_XDECREF(rule_key);
    Py_DECREF(meta);
    return 0;
}

/* [Send(peer, msg, stream)] for a request or answer taken by the C path, None if it was
 * not, NULL on error. */
static PyObject *send_list(RelayHot *self, int taken, PyObject *peer, PyObject *msg, long stream)
{
    if (taken <= 0)
        return taken < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *out = one_send(self, peer, msg, stream); /* steals msg */
    Py_DECREF(peer);
    return out;
}

typedef int (*HotWork)(PyObject *, PyObject *, PyObject *, double, PyObject **, PyObject **,
                       long *);

/* request() and answer(): their arguments checked, the work done, its [Send] or None. */
static PyObject *hot_call(RelayHot *self, PyObject *const *args, Py_ssize_t nargs,
                          HotWork work, const char *usage)
{
    if (nargs != 3 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    double now = PyFloat_AsDouble(args[2]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *peer = NULL, *msg = NULL;
    long stream = 0;
    int taken = work((PyObject *)self, args[0], args[1], now, &peer, &msg, &stream);
    return send_list(self, taken, peer, msg, stream);
}

/*
 * request(origin: str, data: bytes, now: float) -> [Send] | None
 *
 * Relay.on_request for the usual request (see the top of this file); None otherwise.
 */
static PyObject *hot_request(RelayHot *self, PyObject *const *args, Py_ssize_t nargs)
{
    return hot_call(self, args, nargs, sigmw_hot_request, "request(origin, data: bytes, now)");
}

/* RelayHot.answer's work, without the Send (see _speedups.h). */
int sigmw_hot_answer(PyObject *hot, PyObject *peer, PyObject *data, double now,
                     PyObject **peer_out, PyObject **msg_out, long *stream_out)
{
    RelayHot *self = (RelayHot *)hot;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    if (len < HEADER_LEN || be32(d) != ((1u << 24) | (uint32_t)len))
        return 0;
    if ((d[4] & FLAG_ERROR) && self->follow)
        return 0;
    PyObject *key = PyLong_FromUnsignedLong(be32(d + 12)), *count_key = NULL, *result = NULL;
    if (key == NULL)
        return -1;
    PyObject *found = PyDict_GetItemWithError(self->pending, key);
    if (found == NULL || !Py_IS_TYPE(found, &PendingType))
        FALL_BACK();
    Pending *p = (Pending *)found;
    if (p->target == NULL || p->origin == NULL || p->meta == NULL || !PyTuple_Check(p->meta) ||
        PyTuple_GET_SIZE(p->meta) < 2 || !PyTuple_Check(PyTuple_GET_ITEM(p->meta, 0)))
        goto python;
    int same = PyObject_RichCompareBool(p->target, peer, Py_EQ);
    if (same != 1) {
        if (same < 0)
            goto error;
        goto python; /* an answer from a peer the request did not go to: unmatched */
    }
    Peer *client = peer_named(self, p->origin);
    if (client == NULL)
        FALL_BACK();
    PyObject *session = PyTuple_GET_ITEM(p->meta, 1);
    if (client->outbound > 1 && !PyBytes_Check(session))
        goto python;
    int64_t code = sigmw_result_code(d, len);
    result = code < 0 ? Py_NewRef(minus_one) : PyLong_FromLongLong(code);
    if (result == NULL)
        goto error;
    PyObject *header = PyTuple_GET_ITEM(p->meta, 0);
    count_key = PyTuple_Pack(3, PyTuple_GET_ITEM(header, 3), result, s_relayed);
    if (count_key == NULL)
        goto error;
    PyObject *count = PyDict_GetItemWithError(self->answers, count_key);
    if (count == NULL)
        FALL_BACK();
    long stream = client->outbound > 1 ? session_stream(session, client->outbound) : 0;

    /* The usual answer: from here on, what Relay.on_answer does. */
    Py_INCREF(p);
    Py_INCREF(client);
    if (PyDict_DelItem(self->pending, key) < 0)
        goto error_held;
    Peer *target = peer_named(self, p->target);
    if (target != NULL)
        target->pending--;
    else if (PyErr_Occurred())
        goto error_held;
    self->relayed_answers++;
    if (observe(self->latency, now - p->received) < 0 || bump(self->answers, count_key, count) < 0)
        goto error_held;
    PyObject *msg = PyBytes_FromStringAndSize((const char *)d, len);
    if (msg == NULL)
        goto error_held;
    unsigned char *m = (unsigned char *)PyBytes_AS_STRING(msg);
    unsigned int hbh = p->origin_hbh;
    m[12] = (unsigned char)(hbh >> 24), m[13] = (unsigned char)(hbh >> 16);
    m[14] = (unsigned char)(hbh >> 8), m[15] = (unsigned char)hbh;
    *peer_out = Py_NewRef(p->origin), *msg_out = msg, *stream_out = stream;
    Py_DECREF(p);
    Py_DECREF(client);
    Py_DECREF(key);
    Py_DECREF(count_key);
    Py_DECREF(result);
    return 1;

error_held:
    Py_DECREF(p);
    Py_DECREF(client);
error:
    Py_DECREF(key);
    Py_XDECREF(count_key);
    Py_XDECREF(result);
    return -1;
python:
    Py_DECREF(key);
    Py_XDECREF(count_key);
    Py_XDECREF(result);
    return 0;
}

/*
 * answer(peer: str, data: bytes, now: float) -> [Send] | None
 *
 * Relay.on_answer for the usual answer (see the top of this file); None otherwise.
 */
static PyObject *hot_answer(RelayHot *self, PyObject *const *args, Py_ssize_t nargs)
{
    return hot_call(self, args, nargs, sigmw_hot_answer, "answer(peer, data: bytes, now)");
}

static PyObject *hot_take_hbh(RelayHot *self, PyObject *unused)
{
    return PyLong_FromUnsignedLong(self->next_hbh++);
}

static PyMethodDef hot_methods[] = {
    {"request", (PyCFunction)(void (*)(void))hot_request, METH_FASTCALL,
     "Relay.on_request for the usual request; None for anything else (nothing changed)."},
    {"answer", (PyCFunction)(void (*)(void))hot_answer, METH_FASTCALL,
     "Relay.on_answer for the usual answer; None for anything else (nothing changed)."},
    {"take_hbh", (PyCFunction)hot_take_hbh, METH_NOARGS, "A fresh hop-by-hop id."},
    {NULL},
};

static PyTypeObject RelayHotType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sigmw.diameter._speedups.RelayHot",
    .tp_doc = "The relay's usual request and answer in C, sharing the relay's tables.",
    .tp_basicsize = sizeof(RelayHot),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)hot_init,
    .tp_dealloc = (destructor)hot_dealloc,
    .tp_members = hot_members,
    .tp_methods = hot_methods,
};

int sigmw_is_hot(PyObject *obj)
{
    return Py_IS_TYPE(obj, &RelayHotType);
}

void sigmw_hot_count(PyObject *hot, int in_c)
{
    RelayHot *self = (RelayHot *)hot;
    if (in_c)
        self->in_c++;
    else
        self->to_python++;
}

static PyMethodDef functions[] = {
    {"crc32", crc32_py, METH_O, "zlib.crc32 of bytes."},
    {NULL},
};

int sigmw_hotpath_init(PyObject *module)
{
    crc_init();
    s_tiers = PyUnicode_InternFromString("tiers");
    s_counts = PyUnicode_InternFromString("counts");
    s_bounds = PyUnicode_InternFromString("bounds");
    s_sum = PyUnicode_InternFromString("sum");
    s_total = PyUnicode_InternFromString("total");
    s_relayed = PyUnicode_InternFromString("relayed");
    minus_one = PyLong_FromLong(-1);
    if (!s_tiers || !s_counts || !s_bounds || !s_sum || !s_total || !s_relayed || !minus_one)
        return -1;
    PyTypeObject *types[] = {&PendingType, &PeerType, &RelayHotType};
    const char *names[] = {"Pending", "Peer", "RelayHot"};
    for (int i = 0; i < 3; i++) {
        if (PyType_Ready(types[i]) < 0 ||
            PyModule_AddObjectRef(module, names[i], (PyObject *)types[i]) < 0)
            return -1;
    }
    return PyModule_AddFunctions(module, functions);
}
