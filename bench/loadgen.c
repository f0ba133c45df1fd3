/*
 * loadgen: the benchmark's load generator (one epoll loop per process, no threads).
 *
 *   loadgen hold --target IP:PORT --src IP --count N --path PATH
 *                [--max-pending K] [--retries R] [--ready-timeout S] [--lat-file PREFIX]
 *                [--max-seconds S]
 *
 *       Opens N HTTP/1.1 stream holds (GET PATH) from source address IP, at most K
 *       connecting at a time, and waits until each got its response head and the
 *       line "[stream opened]". A connection refused or answered with anything but
 *       200 (Pushpin answers 500 "Accept service unavailable." under a burst of
 *       opens) is opened again, up to R times (default 5). Then prints one line
 *           READY {"ok":..,"failed":..,"retried":..,"ms":..}
 *       and serves commands read from stdin, one per line:
 *           RESET M        zero every counter; M > 0 also tracks which of the seqs
 *                          0..M-1 each connection got (losses, duplicates)
 *           WAIT N T I     wait until every live connection has >= N messages since
 *                          RESET, or T ms passed, or no message came for I ms; then
 *                          print one JSON line (see report()) and write the latencies
 *                          (float64 microseconds, one per delivery) to PREFIX.<k>
 *           QUIT           close everything and exit
 *       End of stdin also ends the process, and so does --max-seconds (default 1800).
 *
 *       Every body line "M<seq> <t_ns> ..." is one message; t_ns is the
 *       publisher's CLOCK_MONOTONIC time just before it wrote the publish request,
 *       so the latency is measured on one clock across processes.
 *
 *   loadgen pub --target IP:PORT --src IP --channel C --count M --concurrency K
 *               [--first-seq S] [--pad B]
 *
 *       Sends M publishes (one item each, format http-stream, content
 *       "M<seq> <t_ns> <B bytes of padding>\n"), K in flight, each on its own
 *       connection (both servers answer Connection: close). seq runs S..S+M-1 in
 *       sending order. Prints one JSON line with counts, timings and RTTs.
 *
 * Both modes print their own CPU time (getrusage) so the caller can tell whether
 * the generator was a bottleneck.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s: %s\n", msg, strerror(errno));
    exit(1);
}

static struct sockaddr_in parse_addr(const char *s, int need_port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *colon = strchr(buf, ':');
    if (colon) {
        *colon = 0;
        a.sin_port = htons((uint16_t)atoi(colon + 1));
    } else if (need_port) {
        fprintf(stderr, "loadgen: address needs a port: %s\n", s);
        exit(2);
    }
    if (inet_pton(AF_INET, buf, &a.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad address %s\n", s);
        exit(2);
    }
    return a;
}

/* Non-blocking socket bound to src (port chosen at connect time), connect started. */
static int open_conn(const struct sockaddr_in *src, const struct sockaddr_in *dst) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)src, sizeof *src) < 0) {
        close(fd);
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------------- latencies */

typedef struct {
    double *v;
    size_t n, cap;
} vec_t;

static void vec_push(vec_t *a, double x) {
    if (a->n == a->cap) {
        if (a->cap >= 20000000) return; /* bound memory: 160 MB */
        a->cap = a->cap ? a->cap * 2 : 65536;
        a->v = realloc(a->v, a->cap * sizeof(double));
        if (!a->v) die("realloc");
    }
    a->v[a->n++] = x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const vec_t *a, double p) {
    if (!a->n) return -1;
    size_t i = (size_t)(p * (a->n - 1) + 0.5);
    return a->v[i];
}

/* ---------------------------------------------------------------- hold mode */

enum { C_FREE, C_CONNECTING, C_HEAD, C_OPEN, C_DEAD };
enum { B_RAW, B_SIZE, B_SIZE_EXT, B_DATA, B_DATA_CR, B_DATA_LF, B_END };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t bstate;
    uint8_t chunked;
    uint8_t ready;
    uint8_t linelen;
    uint8_t overlong;
    uint8_t retries;
    uint32_t chunk_left;
    char *head;      /* response head, only until parsed */
    uint32_t headlen;
    char line[96];
    /* counters since RESET */
    uint32_t count, dups, disorder;
    int64_t last_seq;
    uint64_t hash;
    uint8_t *seen; /* bitmap, when tracking */
} conn_t;

static conn_t *conns;
static int nconns, nopened, npending, nready, nfailed, ndead_after_ready;
static int max_retries = 5, nretries;
static int *retryq, nretryq; /* connections to open again after a failure before their initial body */
static int track_m;
static vec_t lats;
static int64_t last_msg_ns, first_msg_ns;
static uint64_t total_msgs, foreign_lines;
static int epfd;

static int fail_logged, after_ready_phase;

static void conn_fail_why(conn_t *c, const char *why) {
    if (fail_logged++ < 5) {
        fprintf(stderr, "loadgen hold: connection %d failed before its initial body: %s (errno %d %s)%s%.220s\n",
                (int)(c - conns), why, errno, strerror(errno), c->head ? "; head: " : "", c->head ? c->head : "");
    }
}

static void conn_fail(conn_t *c, int after_ready) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    free(c->head);
    c->head = NULL;
    if (c->state == C_CONNECTING || c->state == C_HEAD || (c->state == C_OPEN && !c->ready)) {
        npending--;
        if (c->retries < max_retries && !after_ready_phase) {
            c->retries++;
            nretries++;
            c->state = C_FREE;
            c->bstate = 0;
            c->chunk_left = 0;
            c->headlen = 0;
            c->linelen = 0;
            c->overlong = 0;
            retryq[nretryq++] = (int)(c - conns);
            return;
        }
        nfailed++;
    } else if (after_ready) {
        ndead_after_ready++;
    }
    c->state = C_DEAD;
}

static void on_line(conn_t *c, int64_t t) {
    if (c->overlong) return;
    c->line[c->linelen] = 0;
    if (!c->ready) {
        if (strcmp(c->line, "[stream opened]") == 0) {
            c->ready = 1;
            npending--;
            nready++;
        } else {
            foreign_lines++;
        }
        return;
    }
    if (c->line[0] != 'M') {
        foreign_lines++;
        return;
    }
    char *end;
    long long seq = strtoll(c->line + 1, &end, 10);
    long long tns = strtoll(end, &end, 10);
    total_msgs++;
    if (!first_msg_ns) first_msg_ns = t;
    last_msg_ns = t;
    c->count++;
    if (seq <= c->last_seq) c->disorder++;
    c->last_seq = seq;
    c->hash = c->hash * 1000003ULL + (uint64_t)seq + 1;
    if (c->seen && seq >= 0 && seq < track_m) {
        uint8_t bit = 1u << (seq & 7);
        if (c->seen[seq >> 3] & bit) c->dups++;
        c->seen[seq >> 3] |= bit;
    } else if (c->seen) {
        c->dups++; /* outside the tracked range: counts as unexpected */
    }
    if (tns > 0) vec_push(&lats, (t - tns) / 1000.0);
}

static void feed_body(conn_t *c, const char *p, size_t n, int64_t t) {
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n') {
            on_line(c, t);
            c->linelen = 0;
            c->overlong = 0;
        } else if (c->linelen < sizeof c->line - 1) {
            c->line[c->linelen++] = ch;
        } else {
            c->overlong = 1;
        }
    }
}

/* Feed bytes after the head: raw, or decode chunked framing. Returns 0 on protocol end. */
static int feed_transfer(conn_t *c, const char *p, size_t n, int64_t t) {
    size_t i = 0;
    while (i < n) {
        switch (c->bstate) {
        case B_RAW:
            feed_body(c, p + i, n - i, t);
            return 1;
        case B_SIZE: {
            char ch = p[i++];
            if (isxdigit((unsigned char)ch)) {
                int d = isdigit((unsigned char)ch) ? ch - '0' : (tolower(ch) - 'a' + 10);
                c->chunk_left = c->chunk_left * 16 + d;
            } else if (ch == '\n') {
                if (c->chunk_left == 0) { c->bstate = B_END; return 0; }
                c->bstate = B_DATA;
            } else {
                c->bstate = B_SIZE_EXT;
            }
            break;
        }
        case B_SIZE_EXT:
            if (p[i++] == '\n') {
                if (c->chunk_left == 0) { c->bstate = B_END; return 0; }
                c->bstate = B_DATA;
            }
            break;
        case B_DATA: {
            size_t take = n - i < c->chunk_left ? n - i : c->chunk_left;
            feed_body(c, p + i, take, t);
            i += take;
            c->chunk_left -= (uint32_t)take;
            if (c->chunk_left == 0) c->bstate = B_DATA_CR;
            break;
        }
        case B_DATA_CR:
            if (p[i++] == '\n') { c->bstate = B_SIZE; c->chunk_left = 0; }
            break;
        case B_END:
            return 0;
        default:
            i++;
        }
    }
    return 1;
}

static int start_next(const struct sockaddr_in *src, const struct sockaddr_in *dst) {
    int idx;
    if (nretryq) idx = retryq[--nretryq];
    else if (nopened < nconns) idx = nopened++;
    else return 0;
    conn_t *c = &conns[idx];
    c->fd = open_conn(src, dst);
    c->last_seq = -1;
    npending++;
    if (c->fd < 0) {
        c->state = C_CONNECTING;
        conn_fail(c, 0);
        return 1;
    }
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    return 1;
}

static const char *req;
static size_t reqlen;

static void handle_conn(conn_t *c, uint32_t events, char *buf, size_t bufsz) {
    if (c->state == C_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) { errno = err; conn_fail_why(c, "connect"); conn_fail(c, 0); return; }
        ssize_t w = write(c->fd, req, reqlen);
        if (w != (ssize_t)reqlen) { conn_fail_why(c, "write"); conn_fail(c, 0); return; }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(c - conns)};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->state = C_HEAD;
        return;
    }
    for (;;) {
        ssize_t r = read(c->fd, buf, bufsz);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (!c->ready) conn_fail_why(c, "read");
            conn_fail(c, 1);
            return;
        }
        if (r == 0) { if (!c->ready) conn_fail_why(c, "closed by server"); conn_fail(c, 1); return; }
        int64_t t = now_ns();
        const char *p = buf;
        size_t n = (size_t)r;
        if (c->state == C_HEAD) {
            if (!c->head) c->head = malloc(8192);
            size_t room = 8191 - c->headlen;
            size_t take = n < room ? n : room;
            memcpy(c->head + c->headlen, p, take);
            c->headlen += (uint32_t)take;
            c->head[c->headlen] = 0;
            char *e = strstr(c->head, "\r\n\r\n");
            if (!e) {
                if (c->headlen >= 8191) { conn_fail(c, 0); return; }
                continue;
            }
            size_t headsz = (size_t)(e + 4 - c->head);
            if (strncmp(c->head, "HTTP/1.1 200", 12) != 0 && strncmp(c->head, "HTTP/1.0 200", 12) != 0) {
                conn_fail_why(c, "status");
                conn_fail(c, 0);
                return;
            }
            for (char *q = c->head; q < e; q++) *q = (char)tolower((unsigned char)*q);
            c->chunked = strstr(c->head, "transfer-encoding: chunked") != NULL;
            c->bstate = c->chunked ? B_SIZE : B_RAW;
            /* bytes of this read that follow the head */
            size_t consumed_before = c->headlen - take; /* head bytes from earlier reads */
            size_t used = headsz - consumed_before;
            p += used;
            n -= used;
            free(c->head);
            c->head = NULL;
            c->state = C_OPEN;
        }
        if (n && !feed_transfer(c, p, n, t)) { conn_fail(c, 1); return; }
        if ((size_t)r < bufsz) return;
    }
}

static void do_reset(int m) {
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->count = c->dups = c->disorder = 0;
        c->last_seq = -1;
        c->hash = 0;
        free(c->seen);
        c->seen = NULL;
        if (m > 0 && c->state == C_OPEN) {
            c->seen = calloc((size_t)(m + 7) / 8, 1);
            if (!c->seen) die("calloc");
        }
    }
    track_m = m;
    lats.n = 0;
    total_msgs = foreign_lines = 0;
    first_msg_ns = last_msg_ns = 0;
}

static int wait_n, waiting;
static int64_t wait_deadline, wait_idle_ns, wait_started;
static const char *lat_prefix = "/tmp/loadgen-lat";
static int report_no;

static int wait_done(int64_t t) {
    if (t >= wait_deadline) return 1;
    int64_t last = last_msg_ns > wait_started ? last_msg_ns : wait_started;
    if (t - last >= wait_idle_ns) return 1;
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == C_OPEN && conns[i].count < (uint32_t)wait_n) return 0;
    return 1;
}

static void report(int64_t t) {
    int live = 0, complete = 0;
    uint64_t dups = 0, disorder = 0, lost = 0, missing = 0;
    /* order consistency: how many complete connections disagree with the first one's order */
    uint64_t ref_hash = 0;
    int have_ref = 0, order_mismatch = 0;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state != C_OPEN) continue;
        live++;
        if (c->count >= (uint32_t)wait_n) complete++;
        else missing += (uint64_t)wait_n - c->count;
        dups += c->dups;
        disorder += c->disorder;
        if (c->seen) {
            int got = 0;
            for (int b = 0; b < (track_m + 7) / 8; b++) got += __builtin_popcount(c->seen[b]);
            lost += (uint64_t)(track_m - got);
        }
        if (c->count >= (uint32_t)wait_n) {
            if (!have_ref) { ref_hash = c->hash; have_ref = 1; }
            else if (c->hash != ref_hash) order_mismatch++;
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s.%d", lat_prefix, report_no++);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(lats.v, sizeof(double), lats.n, f);
        fclose(f);
    }
    vec_t sorted = {0};
    if (lats.n) {
        sorted.v = malloc(lats.n * sizeof(double));
        memcpy(sorted.v, lats.v, lats.n * sizeof(double));
        sorted.n = lats.n;
        qsort(sorted.v, sorted.n, sizeof(double), cmp_double);
    }
    printf("{\"live\":%d,\"complete\":%d,\"expected_each\":%d,\"deliveries\":%llu,\"missing\":%llu,"
           "\"lost_tracked\":%llu,\"dups\":%llu,\"disorder\":%llu,\"order_mismatch\":%d,"
           "\"closed_by_server\":%d,\"foreign_lines\":%llu,\"first_ns\":%lld,\"last_ns\":%lld,"
           "\"waited_ms\":%.1f,\"lat_us_p50\":%.1f,\"lat_us_p99\":%.1f,\"lat_us_max\":%.1f,"
           "\"lat_file\":\"%s\",\"cpu_s\":%.3f}\n",
           live, complete, wait_n, (unsigned long long)total_msgs, (unsigned long long)missing,
           (unsigned long long)lost, (unsigned long long)dups, (unsigned long long)disorder, order_mismatch,
           ndead_after_ready, (unsigned long long)foreign_lines, (long long)first_msg_ns,
           (long long)last_msg_ns, (t - wait_started) / 1e6, pct(&sorted, 0.5), pct(&sorted, 0.99),
           sorted.n ? sorted.v[sorted.n - 1] : -1.0, path, cpu_seconds());
    fflush(stdout);
    free(sorted.v);
}

static char cmdbuf[4096];
static size_t cmdlen;

static int handle_stdin(void) {
    ssize_t r = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (r == 0) return 0;
    if (r < 0) return errno == EAGAIN ? 1 : 0;
    cmdlen += (size_t)r;
    char *nl;
    while ((nl = memchr(cmdbuf, '\n', cmdlen))) {
        *nl = 0;
        char *line = cmdbuf;
        if (strncmp(line, "RESET", 5) == 0) {
            do_reset(atoi(line + 5));
            printf("OK\n");
            fflush(stdout);
        } else if (strncmp(line, "WAIT", 4) == 0) {
            int n = 0, tmo = 10000, idle = 10000;
            sscanf(line + 4, "%d %d %d", &n, &tmo, &idle);
            wait_n = n;
            wait_started = now_ns();
            wait_deadline = wait_started + (int64_t)tmo * 1000000;
            wait_idle_ns = (int64_t)idle * 1000000;
            waiting = 1;
        } else if (strncmp(line, "QUIT", 4) == 0) {
            return 0;
        }
        size_t used = (size_t)(nl + 1 - cmdbuf);
        memmove(cmdbuf, nl + 1, cmdlen - used);
        cmdlen -= used;
    }
    if (cmdlen >= sizeof cmdbuf - 1) cmdlen = 0;
    return 1;
}

static int hold_main(int argc, char **argv) {
    const char *target = NULL, *srcs = "127.0.0.1", *path = "/stream?channel=test";
    int count = 1, max_pending = 200, ready_timeout = 120, max_seconds = 1800;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--target")) target = argv[i + 1];
        else if (!strcmp(argv[i], "--src")) srcs = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) count = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--path")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--max-pending")) max_pending = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ready-timeout")) ready_timeout = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lat-file")) lat_prefix = argv[i + 1];
        else if (!strcmp(argv[i], "--max-seconds")) max_seconds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--retries")) max_retries = atoi(argv[i + 1]);
        else { fprintf(stderr, "loadgen hold: unknown option %s\n", argv[i]); return 2; }
    }
    if (!target || count < 1) { fprintf(stderr, "loadgen hold: --target and --count are required\n"); return 2; }
    struct sockaddr_in dst = parse_addr(target, 1), src = parse_addr(srcs, 0);
    src.sin_port = 0;
    static char reqbuf[2048];
    reqlen = (size_t)snprintf(reqbuf, sizeof reqbuf, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gripproxy-bench\r\n\r\n", path, target);
    req = reqbuf;

    nconns = count;
    conns = calloc((size_t)count, sizeof(conn_t));
    if (!conns) die("calloc");
    for (int i = 0; i < count; i++) conns[i].fd = -1;
    retryq = calloc((size_t)count, sizeof(int));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");

    int64_t start = now_ns(), hard_end = start + (int64_t)max_seconds * 1000000000LL;
    char *buf = malloc(65536);
    struct epoll_event evs[512];
    int ready_reported = 0;
    for (;;) {
        while (!ready_reported && npending < max_pending && (nopened < nconns || nretryq)) start_next(&src, &dst);
        int64_t t = now_ns();
        if (!ready_reported && (nready + nfailed >= nconns || t - start > (int64_t)ready_timeout * 1000000000LL)) {
            /* anything still pending counts as failed */
            after_ready_phase = 1;
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                if (c->state == C_CONNECTING || c->state == C_HEAD || (c->state == C_OPEN && !c->ready)) conn_fail(c, 0);
                else if (c->state == C_FREE) { c->state = C_DEAD; nfailed++; }
            }
            printf("READY {\"ok\":%d,\"failed\":%d,\"retried\":%d,\"ms\":%.1f,\"cpu_s\":%.3f}\n", nready, nfailed, nretries,
                   (t - start) / 1e6, cpu_seconds());
            fflush(stdout);
            ready_reported = 1;
            fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
            epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
        }
        if (t > hard_end) { fprintf(stderr, "loadgen hold: --max-seconds reached, exiting\n"); break; }
        int n = epoll_wait(epfd, evs, 512, 20);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        int stop = 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == UINT32_MAX) {
                if (!handle_stdin()) stop = 1;
                continue;
            }
            conn_t *c = &conns[evs[i].data.u32];
            if (c->state == C_DEAD || c->fd < 0) continue;
            handle_conn(c, evs[i].events, buf, 65536);
        }
        if (waiting && wait_done(now_ns())) {
            report(now_ns());
            waiting = 0;
        }
        if (stop) break;
    }
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    return 0;
}

/* ---------------------------------------------------------------- pub mode */

typedef struct {
    int fd;
    int state; /* 0 idle, 1 connecting, 2 reading */
    int64_t t0;
    char resp[2048];
    size_t resplen;
} pubconn_t;

static int pub_main(int argc, char **argv) {
    const char *target = NULL, *srcs = "127.0.0.1", *channel = "test";
    long count = 1, first_seq = 0;
    int conc = 1, pad = 0, max_seconds = 600;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--target")) target = argv[i + 1];
        else if (!strcmp(argv[i], "--src")) srcs = argv[i + 1];
        else if (!strcmp(argv[i], "--channel")) channel = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) count = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency")) conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--first-seq")) first_seq = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--pad")) pad = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-seconds")) max_seconds = atoi(argv[i + 1]);
        else { fprintf(stderr, "loadgen pub: unknown option %s\n", argv[i]); return 2; }
    }
    if (!target) { fprintf(stderr, "loadgen pub: --target is required\n"); return 2; }
    if (pad < 0 || pad > 60000) pad = 0;
    struct sockaddr_in dst = parse_addr(target, 1), src = parse_addr(srcs, 0);
    src.sin_port = 0;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    pubconn_t *pc = calloc((size_t)conc, sizeof(pubconn_t));
    char *padding = malloc((size_t)pad + 1);
    memset(padding, 'x', (size_t)pad);
    padding[pad] = 0;
    size_t reqcap = (size_t)pad + 1024;
    char *reqb = malloc(reqcap), *body = malloc(reqcap);
    vec_t rtts = {0};
    long next = 0, done = 0, ok = 0, errors = 0, non200 = 0, inflight = 0;
    int64_t start = now_ns(), first_send = 0, last_ack = 0, hard_end = start + (int64_t)max_seconds * 1000000000LL;
    struct epoll_event evs[256];
    for (int i = 0; i < conc; i++) pc[i].fd = -1;
    while (done < count) {
        for (int i = 0; i < conc && next < count; i++) {
            if (pc[i].state != 0) continue;
            pc[i].fd = open_conn(&src, &dst);
            if (pc[i].fd < 0) { errors++; done++; next++; continue; }
            pc[i].state = 1;
            pc[i].resplen = 0;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
            epoll_ctl(epfd, EPOLL_CTL_ADD, pc[i].fd, &ev);
            inflight++;
            next++; /* reserve: the seq is assigned when the request is written */
        }
        if (now_ns() > hard_end) { fprintf(stderr, "loadgen pub: --max-seconds reached\n"); break; }
        int n = epoll_wait(epfd, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            pubconn_t *p = &pc[evs[k].data.u32];
            if (p->state == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (!err) {
                    static long seq_counter = 0;
                    long seq = first_seq + seq_counter++;
                    int64_t t0 = now_ns();
                    int blen = snprintf(body, reqcap,
                                        "{\"items\":[{\"channel\":\"%s\",\"formats\":{\"http-stream\":{\"content\":\"M%ld %lld %s\\n\"}}}]}",
                                        channel, seq, (long long)t0, padding);
                    int rlen = snprintf(reqb, reqcap,
                                        "POST /publish/ HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                                        "Content-Length: %d\r\n\r\n%s",
                                        target, blen, body);
                    if (!first_send) first_send = t0;
                    p->t0 = t0;
                    if (write(p->fd, reqb, (size_t)rlen) == rlen) {
                        p->state = 2;
                        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[k].data.u32};
                        epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd, &ev);
                        continue;
                    }
                }
                errors++;
            } else {
                ssize_t r = read(p->fd, p->resp + p->resplen, sizeof p->resp - 1 - p->resplen);
                if (r < 0 && errno == EAGAIN) continue;
                if (r > 0) {
                    p->resplen += (size_t)r;
                    p->resp[p->resplen] = 0;
                    /* complete when the head and Content-Length bytes are in, or at EOF */
                    char *e = strstr(p->resp, "\r\n\r\n");
                    if (!e) continue;
                    char *cl = strcasestr(p->resp, "content-length:");
                    if (!cl || cl > e) continue; /* read to EOF */
                    size_t want = (size_t)(e + 4 - p->resp) + (size_t)atol(cl + 15);
                    if (p->resplen < want) continue;
                }
                int64_t t = now_ns();
                if (p->resplen >= 12 && strncmp(p->resp + 9, "200", 3) == 0) {
                    ok++;
                    vec_push(&rtts, (t - p->t0) / 1000.0);
                } else if (p->resplen >= 12) {
                    non200++;
                    if (non200 <= 3) fprintf(stderr, "loadgen pub: non-200 answer: %.60s\n", p->resp);
                } else {
                    errors++;
                }
                last_ack = t;
            }
            epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd, NULL);
            close(p->fd);
            p->fd = -1;
            p->state = 0;
            inflight--;
            done++;
        }
    }
    qsort(rtts.v, rtts.n, sizeof(double), cmp_double);
    printf("{\"sent\":%ld,\"ok\":%ld,\"non200\":%ld,\"errors\":%ld,\"first_send_ns\":%lld,\"last_ack_ns\":%lld,"
           "\"rtt_us_p50\":%.1f,\"rtt_us_p99\":%.1f,\"rtt_us_max\":%.1f,\"cpu_s\":%.3f,\"first_seq\":%ld}\n",
           next, ok, non200, errors, (long long)first_send, (long long)last_ack, pct(&rtts, 0.5), pct(&rtts, 0.99),
           rtts.n ? rtts.v[rtts.n - 1] : -1.0, cpu_seconds(), first_seq);
    fflush(stdout);
    return (ok == count) ? 0 : 1;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && !strcmp(argv[1], "hold")) return hold_main(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "pub")) return pub_main(argc, argv);
    fprintf(stderr, "usage: loadgen hold|pub [options]  (see the comment at the top of loadgen.c)\n");
    return 2;
}
