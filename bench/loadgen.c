/*
 * loadgen: the benchmark's load generator (one epoll loop per process, no threads).
 *
 *   loadgen hold --target IP:PORT --src IP --count N --path PATH [--mode stream|sse|ws|longpoll]
 *                [--spread K --index-base B] [--max-pending P] [--retries R] [--retry-delay-ms D]
 *                [--ready-timeout S] [--lat-file PREFIX] [--max-seconds S]
 *
 *       Opens N clients from source address IP, at most P opening at a time. Client i asks for
 *       PATH, or with --spread K for PATH followed by the number (B + i) % K (so PATH ends in a
 *       channel prefix: "/stream?channel=mc" asks for channels mc0 .. mc<K-1>).
 *         stream    GET, 200 (chunked or not), ready at the body line "[stream opened]"; every later
 *                   body line is a message.
 *         sse       GET with "Accept: text/event-stream"; the answer must be 200 with Content-Type
 *                   text/event-stream; the body is read as Server-Sent Events: the value of each
 *                   "data:" line is taken as a stream body line (ready at "[stream opened]", then
 *                   each "M..." value is a message); blank lines, comments and other fields are skipped.
 *         ws        WebSocket handshake (GET + Upgrade), ready at "101"; every text message (server
 *                   frames are unmasked; fragments joined) is a message; pings answered with a pong.
 *         longpoll  GET, ready when the request is written; each response body (Content-Length,
 *                   chunked or to EOF) is a message (lines not starting with M, e.g. a hold timeout's
 *                   body, are not); the request is then issued again, on the same connection when
 *                   the server keeps it, else on a new one. A non-200 answer is re-issued after D ms.
 *       A client refused, closed, or answered with anything but 200/101 before it is ready (Pushpin
 *       answers 500 "Accept service unavailable." under a burst of opens) is opened again after D ms
 *       (default 0), up to R times (default 5). Then prints one line
 *           READY {"ok":..,"failed":..,"retried":..,"ms":..,"cpu_s":..}
 *       and serves commands read from stdin, one per line:
 *           RESET M        zero every counter; M > 0 also tracks which of the seqs
 *                          0..M-1 each client got (losses, duplicates)
 *           WAIT N T I     wait until every live client has >= N messages since RESET,
 *                          or T ms passed, or no message came for I ms; then print one JSON
 *                          line (see report()) and write the latencies (float64 microseconds,
 *                          one per delivery) to PREFIX.<k>
 *           WAITT D T I    the same, but done when this process got D messages in total
 *           STATS          print one JSON line at once: counters since RESET (clients live and
 *                          connected, deliveries, closed by the server, long-poll counters) and the
 *                          latencies since the previous STATS (n, p50, p99, max), which it then
 *                          forgets (so a long run's latency list stays small)
 *           QUIT           close everything (WebSockets send a close frame first) and exit
 *       End of stdin also ends the process, and so does --max-seconds (default 1800).
 *
 *       Every message "M<seq> <t_ns> ..." carries the publisher's CLOCK_MONOTONIC time taken just
 *       before it wrote the publish request, so the latency is measured on one clock across processes.
 *
 *   loadgen pub --target IP:PORT --src IP --channel C --count M --concurrency K
 *               [--first-seq S] [--pad B] [--formats stream,ws,response|sse] [--channels K2 --seed X]
 *               [--interval-ms I] [--max-seconds S]
 *
 *       Sends M publishes of one item each, K in flight. The item has the formats asked for
 *       (default http-stream), each with the content "M<seq> <t_ns> <B bytes of padding>" (plus a
 *       newline for http-stream and http-response). Format sse is an http-stream item framed as one
 *       Server-Sent Event: "data: M<seq> <t_ns> <padding>\n\n" (instead of stream; not with it).
 *       seq runs S..S+M-1 in sending order. The channel
 *       is C, or with --channels K2 C followed by a pseudo-random number below K2 (seeded). With
 *       --interval-ms the i-th publish is not sent before first + i*I ms. Connections are kept
 *       alive and reused unless the server answers "Connection: close" (or without a length).
 *       Prints one JSON line with counts, timings, RTTs and, with --channels, how many
 *       publishes went to each channel.
 *
 * Both modes print their own CPU time (getrusage) so the caller can tell whether the generator
 * was a bottleneck.
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

enum { M_STREAM, M_WS, M_LONGPOLL, M_SSE };
enum { C_FREE, C_CONNECTING, C_HEAD, C_OPEN, C_DEAD };
enum { B_RAW, B_SIZE, B_SIZE_EXT, B_DATA, B_DATA_CR, B_TRAILER, B_LEN, B_END };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t bstate;
    uint8_t ready;
    uint8_t linelen;
    uint8_t overlong;
    uint8_t retries;
    uint8_t keepalive; /* longpoll: the server keeps the connection after this response */
    uint8_t ws_hlen, ws_need, ws_op, ws_fin;
    uint8_t ws_hdr[14];
    uint16_t errors; /* longpoll: non-200 answers after ready */
    uint8_t got_msg; /* longpoll: this response carried a message */
    uint32_t chunk_left;
    uint64_t ws_left;
    char *head;      /* response head, only until parsed */
    uint32_t headlen;
    int status;
    char line[96];
    /* counters since RESET */
    uint32_t count, dups, disorder;
    int64_t last_seq;
    uint64_t hash;
    uint8_t *seen; /* bitmap, when tracking */
} conn_t;

static conn_t *conns;
static int mode = M_STREAM;
static int nconns, nopened, npending, nready, nfailed, ndead_after_ready;
static int max_retries = 5, nretries;
static int64_t retry_delay_ns;
static uint64_t lp_reissues, lp_errors, lp_reconnects, lp_timeouts;
/* clients to (re)open: FIFO of (index, not before) */
static int *openq;
static int64_t *openq_at;
static int openq_head, openq_tail, openq_cap;
static int track_m;
static vec_t lats;
static int64_t last_msg_ns, first_msg_ns;
static uint64_t total_msgs, foreign_lines;
static int epfd;
static int fail_logged, after_ready_phase, quitting;
static const char *path_prefix, *target_str;
static int spread, index_base;

static void openq_push(int idx, int64_t at) {
    openq[openq_tail] = idx;
    openq_at[openq_tail] = at;
    openq_tail = (openq_tail + 1) % openq_cap;
}

static int live(const conn_t *c) { return c->ready && c->state != C_DEAD; }

static void conn_fail_why(conn_t *c, const char *why) {
    if (fail_logged++ < 5) {
        fprintf(stderr, "loadgen hold: client %d failed%s: %s (errno %d %s)%s%.220s\n", (int)(c - conns),
                c->ready ? " after it was ready" : " before it was ready", why, errno, strerror(errno),
                c->head ? "; head: " : "", c->head ? c->head : "");
    }
}

static void reset_parse(conn_t *c) {
    c->bstate = 0;
    c->chunk_left = 0;
    c->headlen = 0;
    c->linelen = 0;
    c->overlong = 0;
    c->ws_hlen = 0;
    c->ws_need = 2;
    c->ws_left = 0;
    free(c->head);
    c->head = NULL;
}

static void close_fd(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    reset_parse(c);
}

/* A client's connection failed or ended. Opening clients are retried; a ready long-poll client
   opens a new connection (after `delay` ns); any other ready client is gone. */
static void conn_fail(conn_t *c, int64_t delay) {
    close_fd(c);
    if (!c->ready) {
        npending--;
        if (c->retries < max_retries && !after_ready_phase) {
            c->retries++;
            nretries++;
            c->state = C_FREE;
            openq_push((int)(c - conns), now_ns() + retry_delay_ns);
            return;
        }
        nfailed++;
        c->state = C_DEAD;
        return;
    }
    if (mode == M_LONGPOLL && !quitting && c->errors < 100) {
        lp_reconnects++;
        c->state = C_FREE;
        openq_push((int)(c - conns), now_ns() + delay);
        return;
    }
    ndead_after_ready++;
    c->state = C_DEAD;
}

static void mark_ready(conn_t *c) {
    if (c->ready) return;
    c->ready = 1;
    npending--;
    nready++;
}

static void on_line(conn_t *c, int64_t t) {
    if (c->overlong) return;
    c->line[c->linelen] = 0;
    const char *line = c->line;
    size_t llen = c->linelen;
    if (mode == M_SSE) {
        /* only "data:" lines carry anything; blank lines end events, ":" lines are comments */
        if (strncmp(line, "data:", 5) != 0) return;
        line += 5;
        if (*line == ' ') line++;
        llen = strlen(line);
    }
    if (!c->ready && (mode == M_STREAM || mode == M_SSE)) {
        if (strcmp(line, "[stream opened]") == 0) mark_ready(c);
        else foreign_lines++;
        return;
    }
    if (line[0] != 'M') {
        if (mode == M_LONGPOLL && llen) lp_timeouts++;
        else if (llen) foreign_lines++;
        return;
    }
    char *end;
    long long seq = strtoll(line + 1, &end, 10);
    long long tns = strtoll(end, &end, 10);
    total_msgs++;
    c->got_msg = 1;
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

static void body_char(conn_t *c, char ch, int64_t t) {
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

static void feed_body(conn_t *c, const char *p, size_t n, int64_t t) {
    for (size_t i = 0; i < n; i++) body_char(c, p[i], t);
}

/* The end of a message without a final newline (WebSocket messages, long-poll bodies). */
static void end_message(conn_t *c, int64_t t) {
    if (c->linelen || c->overlong) on_line(c, t);
    c->linelen = 0;
    c->overlong = 0;
}

/* Feed bytes after the head: raw, length-delimited or chunked. Returns how many bytes were used;
   *done is set when the body ended (chunked end, or the length reached). */
static size_t feed_transfer(conn_t *c, const char *p, size_t n, int64_t t, int *done) {
    size_t i = 0;
    *done = 0;
    while (i < n) {
        switch (c->bstate) {
        case B_RAW:
            feed_body(c, p + i, n - i, t);
            return n;
        case B_LEN: {
            size_t take = n - i < c->chunk_left ? n - i : c->chunk_left;
            feed_body(c, p + i, take, t);
            i += take;
            c->chunk_left -= (uint32_t)take;
            if (c->chunk_left == 0) { c->bstate = B_END; *done = 1; return i; }
            break;
        }
        case B_SIZE: {
            char ch = p[i++];
            if (isxdigit((unsigned char)ch)) {
                int d = isdigit((unsigned char)ch) ? ch - '0' : (tolower(ch) - 'a' + 10);
                c->chunk_left = c->chunk_left * 16 + d;
            } else if (ch == '\n') {
                c->bstate = c->chunk_left == 0 ? B_TRAILER : B_DATA;
                c->ws_hlen = 0;
            } else {
                c->bstate = B_SIZE_EXT;
            }
            break;
        }
        case B_SIZE_EXT:
            if (p[i++] == '\n') {
                c->bstate = c->chunk_left == 0 ? B_TRAILER : B_DATA;
                c->ws_hlen = 0;
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
        case B_TRAILER: { /* trailer lines up to an empty one; ws_hlen counts the line's characters */
            char ch = p[i++];
            if (ch == '\n') {
                if (c->ws_hlen == 0) { c->bstate = B_END; *done = 1; return i; }
                c->ws_hlen = 0;
            } else if (ch != '\r') {
                c->ws_hlen = 1;
            }
            break;
        }
        case B_END:
            *done = 1;
            return i;
        default:
            i++;
        }
    }
    return i;
}

/* WebSocket frames from the server (unmasked). Returns 0 when the server closed the WebSocket. */
static int feed_ws(conn_t *c, const uint8_t *p, size_t n, int64_t t) {
    size_t i = 0;
    while (i < n) {
        if (c->ws_hlen < c->ws_need) {
            c->ws_hdr[c->ws_hlen++] = p[i++];
            if (c->ws_hlen == 2) {
                uint8_t len7 = c->ws_hdr[1] & 0x7f;
                c->ws_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((c->ws_hdr[1] & 0x80) ? 4 : 0);
            }
            if (c->ws_hlen < c->ws_need) continue;
            uint8_t len7 = c->ws_hdr[1] & 0x7f;
            uint64_t len = len7;
            if (len7 == 126) len = ((uint64_t)c->ws_hdr[2] << 8) | c->ws_hdr[3];
            else if (len7 == 127) { len = 0; for (int k = 2; k < 10; k++) len = (len << 8) | c->ws_hdr[k]; }
            c->ws_left = len;
            uint8_t op = c->ws_hdr[0] & 0x0f;
            c->ws_fin = c->ws_hdr[0] & 0x80;
            if (op != 0) c->ws_op = op;
            if (op == 0x8) return 0; /* close */
            if (op == 0x9) {         /* ping: answer with an empty pong */
                static const uint8_t pong[6] = {0x8a, 0x80, 0, 0, 0, 0};
                if (write(c->fd, pong, sizeof pong) < 0) return 0;
            }
        }
        size_t take = n - i < c->ws_left ? n - i : (size_t)c->ws_left;
        if (c->ws_op == 0x1 || c->ws_op == 0x2) feed_body(c, (const char *)p + i, take, t);
        i += take;
        c->ws_left -= take;
        if (c->ws_left == 0) {
            if (c->ws_fin && (c->ws_op == 0x1 || c->ws_op == 0x2)) end_message(c, t);
            c->ws_hlen = 0;
            c->ws_need = 2;
        }
    }
    return 1;
}

static void client_path(conn_t *c, char *out, size_t cap) {
    if (spread > 0) snprintf(out, cap, "%s%d", path_prefix, (index_base + (int)(c - conns)) % spread);
    else snprintf(out, cap, "%s", path_prefix);
}

static int send_request(conn_t *c) {
    char path[1024], reqbuf[2048];
    client_path(c, path, sizeof path);
    int len;
    if (mode == M_WS)
        len = snprintf(reqbuf, sizeof reqbuf,
                       "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gripproxy-bench\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n", path, target_str);
    else if (mode == M_SSE)
        len = snprintf(reqbuf, sizeof reqbuf, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gripproxy-bench\r\n"
                       "Accept: text/event-stream\r\n\r\n", path, target_str);
    else
        len = snprintf(reqbuf, sizeof reqbuf, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gripproxy-bench\r\n\r\n",
                       path, target_str);
    if (write(c->fd, reqbuf, (size_t)len) != len) return 0;
    c->state = C_HEAD;
    c->got_msg = 0;
    if (mode == M_LONGPOLL) mark_ready(c);
    return 1;
}

static void open_client(int idx, const struct sockaddr_in *src, const struct sockaddr_in *dst) {
    conn_t *c = &conns[idx];
    if (!c->ready) npending++;
    c->last_seq = c->ready ? c->last_seq : -1;
    c->state = C_CONNECTING;
    c->fd = open_conn(src, dst);
    if (c->fd < 0) {
        conn_fail_why(c, "socket/connect");
        conn_fail(c, retry_delay_ns);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

/* A long-poll response is complete: ask again. */
static void lp_next(conn_t *c, int64_t t) {
    end_message(c, t);
    int ok = c->status == 200;
    if (!ok) { lp_errors++; c->errors++; }
    lp_reissues++;
    /* an answer without a message (a hold timeout) is asked again after 100 ms, so that a server that
       answers at once is not asked in a tight loop */
    int quiet = ok && !c->got_msg;
    if (ok && !quiet && c->keepalive && c->bstate == B_END) {
        reset_parse(c);
        if (send_request(c)) return;
    }
    conn_fail(c, ok && !quiet ? 0 : (retry_delay_ns > 100000000LL ? retry_delay_ns : 100000000LL));
}

static void handle_conn(conn_t *c, uint32_t events, char *buf, size_t bufsz) {
    if (c->state == C_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) { errno = err; conn_fail_why(c, "connect"); conn_fail(c, retry_delay_ns); return; }
        if (!send_request(c)) { conn_fail_why(c, "write"); conn_fail(c, retry_delay_ns); return; }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(c - conns)};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    for (int reads = 0; reads < 64; reads++) {
        ssize_t r = read(c->fd, buf, bufsz);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_fail_why(c, "read");
            conn_fail(c, retry_delay_ns);
            return;
        }
        int64_t t = now_ns();
        if (r == 0) {
            /* a long-poll body without a length ends here */
            if (mode == M_LONGPOLL && c->state == C_OPEN && c->bstate == B_RAW) { c->keepalive = 0; lp_next(c, t); return; }
            if (!c->ready || mode != M_LONGPOLL) conn_fail_why(c, "closed by server");
            conn_fail(c, 0);
            return;
        }
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
                if (c->headlen >= 8191) { conn_fail_why(c, "head too long"); conn_fail(c, retry_delay_ns); return; }
                continue;
            }
            size_t headsz = (size_t)(e + 4 - c->head);
            c->status = c->headlen >= 12 ? atoi(c->head + 9) : 0;
            int want = mode == M_WS ? 101 : 200;
            if (c->status != want && !(mode == M_LONGPOLL && c->ready)) {
                conn_fail_why(c, "status");
                conn_fail(c, retry_delay_ns);
                return;
            }
            for (char *q = c->head; q < e; q++) *q = (char)tolower((unsigned char)*q);
            *e = 0;
            if (mode == M_SSE && !strstr(c->head, "\r\ncontent-type: text/event-stream")) {
                conn_fail_why(c, "not text/event-stream");
                conn_fail(c, retry_delay_ns);
                return;
            }
            char *cl = strstr(c->head, "\r\ncontent-length:");
            int chunked = strstr(c->head, "\r\ntransfer-encoding: chunked") != NULL;
            c->keepalive = strstr(c->head, "\r\nconnection: close") == NULL && strncmp(c->head, "http/1.0", 8) != 0;
            if (chunked) c->bstate = B_SIZE;
            else if (cl && mode == M_LONGPOLL) { c->bstate = B_LEN; c->chunk_left = (uint32_t)atol(cl + 17); }
            else c->bstate = B_RAW;
            /* bytes of this read that follow the head */
            size_t consumed_before = c->headlen - take; /* head bytes from earlier reads */
            size_t used = headsz - consumed_before;
            p += used;
            n -= used;
            free(c->head);
            c->head = NULL;
            c->state = C_OPEN;
            c->linelen = 0;
            c->overlong = 0;
            if (mode == M_WS) { mark_ready(c); c->ws_hlen = 0; c->ws_need = 2; }
            if (mode == M_LONGPOLL && c->bstate == B_LEN && c->chunk_left == 0) { c->bstate = B_END; lp_next(c, t); return; }
        }
        if (n) {
            if (mode == M_WS) {
                if (!feed_ws(c, (const uint8_t *)p, n, t)) { conn_fail_why(c, "websocket closed by server"); conn_fail(c, 0); return; }
            } else {
                int done;
                feed_transfer(c, p, n, t, &done);
                if (done && mode == M_LONGPOLL) { lp_next(c, t); return; }
                if (done) { conn_fail_why(c, "stream ended by server"); conn_fail(c, 0); return; }
            }
        }
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
        if (m > 0 && live(c)) {
            c->seen = calloc((size_t)(m + 7) / 8, 1);
            if (!c->seen) die("calloc");
        }
    }
    track_m = m;
    lats.n = 0;
    total_msgs = foreign_lines = 0;
    lp_reissues = lp_errors = lp_reconnects = lp_timeouts = 0;
    first_msg_ns = last_msg_ns = 0;
}

static int wait_n, waiting;
static uint64_t wait_total;
static int64_t wait_deadline, wait_idle_ns, wait_started;
static const char *lat_prefix = "/tmp/loadgen-lat";
static int report_no;

static int wait_done(int64_t t) {
    if (t >= wait_deadline) return 1;
    int64_t last = last_msg_ns > wait_started ? last_msg_ns : wait_started;
    if (t - last >= wait_idle_ns) return 1;
    if (wait_total) return total_msgs >= wait_total;
    for (int i = 0; i < nconns; i++)
        if (live(&conns[i]) && conns[i].count < (uint32_t)wait_n) return 0;
    return 1;
}

static void report(int64_t t) {
    int nlive = 0, complete = 0;
    uint64_t dups = 0, disorder = 0, lost = 0, missing = 0;
    /* order consistency: how many complete clients disagree with the first one's order */
    uint64_t ref_hash = 0;
    int have_ref = 0, order_mismatch = 0;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (!live(c)) continue;
        nlive++;
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
           "\"lp_reissues\":%llu,\"lp_errors\":%llu,\"lp_reconnects\":%llu,\"lp_timeouts\":%llu,"
           "\"lat_file\":\"%s\",\"cpu_s\":%.3f}\n",
           nlive, complete, wait_n, (unsigned long long)total_msgs, (unsigned long long)missing,
           (unsigned long long)lost, (unsigned long long)dups, (unsigned long long)disorder, order_mismatch,
           ndead_after_ready, (unsigned long long)foreign_lines, (long long)first_msg_ns,
           (long long)last_msg_ns, (t - wait_started) / 1e6, pct(&sorted, 0.5), pct(&sorted, 0.99),
           sorted.n ? sorted.v[sorted.n - 1] : -1.0, (unsigned long long)lp_reissues,
           (unsigned long long)lp_errors, (unsigned long long)lp_reconnects, (unsigned long long)lp_timeouts,
           path, cpu_seconds());
    fflush(stdout);
    free(sorted.v);
}

/* STATS: counters now, and the latencies since the previous STATS (then forgotten). */
static void stats_report(void) {
    int nlive = 0, connected = 0;
    uint64_t dups = 0;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (live(c)) nlive++;
        if (c->fd >= 0 && c->state == C_OPEN) connected++;
        dups += c->dups;
    }
    if (lats.n) qsort(lats.v, lats.n, sizeof(double), cmp_double);
    printf("{\"live\":%d,\"connected\":%d,\"ready\":%d,\"failed\":%d,\"deliveries\":%llu,\"dups\":%llu,"
           "\"closed_by_server\":%d,\"foreign_lines\":%llu,\"lp_reissues\":%llu,\"lp_errors\":%llu,"
           "\"lp_reconnects\":%llu,\"lp_timeouts\":%llu,\"lat_n\":%zu,\"lat_us_p50\":%.1f,\"lat_us_p99\":%.1f,"
           "\"lat_us_max\":%.1f,\"cpu_s\":%.3f}\n",
           nlive, connected, nready, nfailed, (unsigned long long)total_msgs, (unsigned long long)dups,
           ndead_after_ready, (unsigned long long)foreign_lines, (unsigned long long)lp_reissues,
           (unsigned long long)lp_errors, (unsigned long long)lp_reconnects, (unsigned long long)lp_timeouts,
           lats.n, pct(&lats, 0.5), pct(&lats, 0.99), lats.n ? lats.v[lats.n - 1] : -1.0, cpu_seconds());
    fflush(stdout);
    lats.n = 0;
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
            long long n = 0;
            int tmo = 10000, idle = 10000, total = line[4] == 'T';
            sscanf(line + 4 + total, "%lld %d %d", &n, &tmo, &idle);
            wait_n = total ? 0 : (int)n;
            wait_total = total && n > 0 ? (uint64_t)n : 0; /* WAITT 0: done at once */
            wait_started = now_ns();
            wait_deadline = wait_started + (int64_t)tmo * 1000000;
            wait_idle_ns = (int64_t)idle * 1000000;
            waiting = 1;
        } else if (strncmp(line, "STATS", 5) == 0) {
            stats_report();
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
    const char *srcs = "127.0.0.1", *modestr = "stream";
    int count = 1, max_pending = 200, ready_timeout = 120, max_seconds = 1800, retry_delay_ms = 0;
    path_prefix = "/stream?channel=test";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--target")) target_str = argv[i + 1];
        else if (!strcmp(argv[i], "--src")) srcs = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) count = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--path")) path_prefix = argv[i + 1];
        else if (!strcmp(argv[i], "--mode")) modestr = argv[i + 1];
        else if (!strcmp(argv[i], "--spread")) spread = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--index-base")) index_base = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-pending")) max_pending = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ready-timeout")) ready_timeout = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lat-file")) lat_prefix = argv[i + 1];
        else if (!strcmp(argv[i], "--max-seconds")) max_seconds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--retries")) max_retries = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--retry-delay-ms")) retry_delay_ms = atoi(argv[i + 1]);
        else { fprintf(stderr, "loadgen hold: unknown option %s\n", argv[i]); return 2; }
    }
    if (!target_str || count < 1) { fprintf(stderr, "loadgen hold: --target and --count are required\n"); return 2; }
    if (!strcmp(modestr, "stream")) mode = M_STREAM;
    else if (!strcmp(modestr, "ws")) mode = M_WS;
    else if (!strcmp(modestr, "longpoll")) mode = M_LONGPOLL;
    else if (!strcmp(modestr, "sse")) mode = M_SSE;
    else { fprintf(stderr, "loadgen hold: --mode stream|sse|ws|longpoll\n"); return 2; }
    if (max_retries > 250) max_retries = 250;
    retry_delay_ns = (int64_t)retry_delay_ms * 1000000;
    struct sockaddr_in dst = parse_addr(target_str, 1), src = parse_addr(srcs, 0);
    src.sin_port = 0;

    nconns = count;
    conns = calloc((size_t)count, sizeof(conn_t));
    if (!conns) die("calloc");
    for (int i = 0; i < count; i++) { conns[i].fd = -1; conns[i].ws_need = 2; conns[i].last_seq = -1; }
    openq_cap = count + 1;
    openq = calloc((size_t)openq_cap, sizeof(int));
    openq_at = calloc((size_t)openq_cap, sizeof(int64_t));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");

    int64_t start = now_ns(), hard_end = start + (int64_t)max_seconds * 1000000000LL;
    char *buf = malloc(65536);
    struct epoll_event evs[512];
    int ready_reported = 0;
    for (;;) {
        int64_t t = now_ns();
        /* clients waiting to be (re)opened: first the queue (in time order), then fresh ones */
        while (openq_head != openq_tail && openq_at[openq_head] <= t && (npending < max_pending || conns[openq[openq_head]].ready)) {
            int idx = openq[openq_head];
            openq_head = (openq_head + 1) % openq_cap;
            if (conns[idx].state == C_FREE) open_client(idx, &src, &dst);
        }
        while (!ready_reported && npending < max_pending && nopened < nconns) open_client(nopened++, &src, &dst);
        t = now_ns();
        if (!ready_reported && (nready + nfailed >= nconns || t - start > (int64_t)ready_timeout * 1000000000LL)) {
            /* anything still opening counts as failed */
            after_ready_phase = 1;
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                if (c->ready || c->state == C_DEAD) continue;
                if (c->state == C_FREE) { c->state = C_DEAD; nfailed++; }
                else conn_fail(c, 0);
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
        int n = epoll_wait(epfd, evs, 512, openq_head != openq_tail ? 5 : 20);
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
    quitting = 1;
    /* WebSockets say goodbye (close 1001, masked with a zero key) before the sockets close */
    static const uint8_t bye[8] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9};
    for (int i = 0; i < nconns; i++) {
        if (conns[i].fd < 0) continue;
        if (mode == M_WS && conns[i].state == C_OPEN) {
            ssize_t w = write(conns[i].fd, bye, sizeof bye);
            (void)w;
        }
        close(conns[i].fd);
    }
    return 0;
}

/* ---------------------------------------------------------------- pub mode */

typedef struct {
    int fd;
    int state; /* 0 closed, 1 connecting, 2 waiting for the answer, 3 open and idle (kept alive) */
    int64_t t0;
    char resp[2048];
    size_t resplen;
} pubconn_t;

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int pub_main(int argc, char **argv) {
    const char *target = NULL, *srcs = "127.0.0.1", *channel = "test", *formats = "stream";
    long count = 1, first_seq = 0;
    int conc = 1, pad = 0, max_seconds = 600, nchannels = 0, interval_ms = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--target")) target = argv[i + 1];
        else if (!strcmp(argv[i], "--src")) srcs = argv[i + 1];
        else if (!strcmp(argv[i], "--channel")) channel = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) count = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency")) conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--first-seq")) first_seq = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--pad")) pad = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--formats")) formats = argv[i + 1];
        else if (!strcmp(argv[i], "--channels")) nchannels = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) rng_state = 88172645463325252ULL ^ (uint64_t)atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--interval-ms")) interval_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-seconds")) max_seconds = atoi(argv[i + 1]);
        else { fprintf(stderr, "loadgen pub: unknown option %s\n", argv[i]); return 2; }
    }
    if (!target) { fprintf(stderr, "loadgen pub: --target is required\n"); return 2; }
    if (pad < 0 || pad > 60000) pad = 0;
    if (conc < 1) conc = 1;
    if (nchannels < 0 || nchannels > 1000000) nchannels = 0;
    int f_stream = strstr(formats, "stream") != NULL, f_ws = strstr(formats, "ws") != NULL,
        f_resp = strstr(formats, "response") != NULL, f_sse = strstr(formats, "sse") != NULL;
    if (f_sse && f_stream) { fprintf(stderr, "loadgen pub: formats sse and stream are both http-stream\n"); return 2; }
    struct sockaddr_in dst = parse_addr(target, 1), src = parse_addr(srcs, 0);
    src.sin_port = 0;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    pubconn_t *pc = calloc((size_t)conc, sizeof(pubconn_t));
    long *per_channel = nchannels ? calloc((size_t)nchannels, sizeof(long)) : NULL;
    char *padding = malloc((size_t)pad + 1);
    memset(padding, 'x', (size_t)pad);
    padding[pad] = 0;
    size_t reqcap = 3 * (size_t)pad + 2048;
    char *reqb = malloc(reqcap), *body = malloc(reqcap);
    vec_t rtts = {0};
    long next = 0, done = 0, ok = 0, errors = 0, non200 = 0, seq_counter = 0, connects = 0;
    int64_t start = now_ns(), first_send = 0, last_ack = 0, hard_end = start + (int64_t)max_seconds * 1000000000LL;
    struct epoll_event evs[256];
    for (int i = 0; i < conc; i++) pc[i].fd = -1;

    /* Writes the next publish on p (connected). Returns 0 on a failed write. */
    #define SEND_PUBLISH(p, slot)                                                                              \
        do {                                                                                                   \
            long seq = first_seq + seq_counter++;                                                              \
            char ch[256];                                                                                      \
            if (nchannels) {                                                                                   \
                int k = (int)(rng() % (uint64_t)nchannels);                                                    \
                per_channel[k]++;                                                                              \
                snprintf(ch, sizeof ch, "%s%d", channel, k);                                                   \
            } else {                                                                                           \
                snprintf(ch, sizeof ch, "%s", channel);                                                        \
            }                                                                                                  \
            int64_t t0 = now_ns();                                                                             \
            char msg[128];                                                                                     \
            snprintf(msg, sizeof msg, "M%ld %lld ", seq, (long long)t0);                                       \
            int blen = snprintf(body, reqcap, "{\"items\":[{\"channel\":\"%s\",\"formats\":{", ch);            \
            const char *sep = "";                                                                              \
            if (f_stream) { blen += snprintf(body + blen, reqcap - blen, "%s\"http-stream\":{\"content\":\"%s%s\\n\"}", sep, msg, padding); sep = ","; } \
            if (f_sse) { blen += snprintf(body + blen, reqcap - blen, "%s\"http-stream\":{\"content\":\"data: %s%s\\n\\n\"}", sep, msg, padding); sep = ","; } \
            if (f_ws) { blen += snprintf(body + blen, reqcap - blen, "%s\"ws-message\":{\"content\":\"%s%s\"}", sep, msg, padding); sep = ","; } \
            if (f_resp) { blen += snprintf(body + blen, reqcap - blen, "%s\"http-response\":{\"body\":\"%s%s\\n\"}", sep, msg, padding); sep = ","; } \
            blen += snprintf(body + blen, reqcap - blen, "}}]}");                                              \
            int rlen = snprintf(reqb, reqcap,                                                                  \
                                "POST /publish/ HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"    \
                                "Content-Length: %d\r\n\r\n%s", target, blen, body);                           \
            if (!first_send) first_send = t0;                                                                  \
            (p)->t0 = t0;                                                                                      \
            (p)->resplen = 0;                                                                                  \
            if (write((p)->fd, reqb, (size_t)rlen) == rlen) {                                                  \
                (p)->state = 2;                                                                                \
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(slot)};        \
                epoll_ctl(epfd, EPOLL_CTL_MOD, (p)->fd, &ev);                                                  \
                sent_ok = 1;                                                                                   \
            }                                                                                                  \
        } while (0)

    while (done < count) {
        int64_t t = now_ns();
        for (int i = 0; i < conc && next < count; i++) {
            if (interval_ms && t < start + (int64_t)next * interval_ms * 1000000LL) break;
            pubconn_t *p = &pc[i];
            if (p->state == 3) { /* kept alive: send now */
                int sent_ok = 0;
                SEND_PUBLISH(p, i);
                next++;
                if (!sent_ok) {
                    errors++;
                    done++;
                    epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd, NULL);
                    close(p->fd);
                    p->fd = -1;
                    p->state = 0;
                }
                continue;
            }
            if (p->state != 0) continue;
            p->fd = open_conn(&src, &dst);
            if (p->fd < 0) { errors++; done++; next++; continue; }
            connects++;
            p->state = 1;
            p->resplen = 0;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
            epoll_ctl(epfd, EPOLL_CTL_ADD, p->fd, &ev);
            next++; /* reserve: the seq is assigned when the request is written */
        }
        if (now_ns() > hard_end) { fprintf(stderr, "loadgen pub: --max-seconds reached\n"); break; }
        int n = epoll_wait(epfd, evs, 256, interval_ms ? 1 : 100);
        for (int k = 0; k < n; k++) {
            int slot = (int)evs[k].data.u32;
            pubconn_t *p = &pc[slot];
            int reusable = 0;
            if (p->state == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (!err) {
                    int sent_ok = 0;
                    SEND_PUBLISH(p, slot);
                    if (sent_ok) continue;
                }
                errors++;
            } else if (p->state == 3) {
                /* the server closed a kept-alive connection (or sent something unasked): drop it */
                epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd, NULL);
                close(p->fd);
                p->fd = -1;
                p->state = 0;
                continue;
            } else {
                ssize_t r = read(p->fd, p->resp + p->resplen, sizeof p->resp - 1 - p->resplen);
                if (r < 0 && errno == EAGAIN) continue;
                if (r > 0) {
                    p->resplen += (size_t)r;
                    p->resp[p->resplen] = 0;
                    /* complete when the head and Content-Length bytes are in, or at EOF */
                    char *e = strstr(p->resp, "\r\n\r\n");
                    if (!e) continue;
                    char *cl = strcasestr(p->resp, "\r\ncontent-length:");
                    if (!cl || cl > e) continue; /* read to EOF */
                    size_t want = (size_t)(e + 4 - p->resp) + (size_t)atol(cl + 17);
                    if (p->resplen < want) continue;
                    char *close_hdr = strcasestr(p->resp, "\r\nconnection: close");
                    reusable = (!close_hdr || close_hdr > e) && strncmp(p->resp, "HTTP/1.0", 8) != 0;
                }
                int64_t t1 = now_ns();
                if (p->resplen >= 12 && strncmp(p->resp + 9, "200", 3) == 0) {
                    ok++;
                    vec_push(&rtts, (t1 - p->t0) / 1000.0);
                } else if (p->resplen >= 12) {
                    non200++;
                    if (non200 <= 3) fprintf(stderr, "loadgen pub: non-200 answer: %.60s\n", p->resp);
                } else {
                    errors++;
                }
                last_ack = t1;
            }
            {
                done++;
                if (reusable) {
                    p->state = 3;
                    p->resplen = 0;
                    continue;
                }
                epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd, NULL);
                close(p->fd);
                p->fd = -1;
                p->state = 0;
            }
        }
    }
    for (int i = 0; i < conc; i++)
        if (pc[i].fd >= 0) close(pc[i].fd);
    qsort(rtts.v, rtts.n, sizeof(double), cmp_double);
    printf("{\"sent\":%ld,\"ok\":%ld,\"non200\":%ld,\"errors\":%ld,\"connects\":%ld,\"first_send_ns\":%lld,\"last_ack_ns\":%lld,"
           "\"rtt_us_p50\":%.1f,\"rtt_us_p99\":%.1f,\"rtt_us_max\":%.1f,\"cpu_s\":%.3f,\"first_seq\":%ld",
           next, ok, non200, errors, connects, (long long)first_send, (long long)last_ack, pct(&rtts, 0.5),
           pct(&rtts, 0.99), rtts.n ? rtts.v[rtts.n - 1] : -1.0, cpu_seconds(), first_seq);
    if (nchannels) {
        printf(",\"per_channel\":[");
        for (int k = 0; k < nchannels; k++) printf(k ? ",%ld" : "%ld", per_channel[k]);
        printf("]");
    }
    printf("}\n");
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
