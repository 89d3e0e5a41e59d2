/*
 * epoll_echo: a minimal stamped echo server, the reference that
 * scripts/compare.sh measures stamp-echo's CPU per message against (not part
 * of the library). Line framing: each complete line goes back behind
 * "[ctime] ", byte for byte (its "\n" or "\r\n" included); a line cut by a
 * read waits for the rest (at most MAX_LINE bytes, else the connection is
 * closed); at end of input a last line without a newline is answered.
 *
 * One epoll thread per core over one shared listener (EPOLLEXCLUSIVE),
 * non-blocking sockets, level-triggered: one read answered with one write.
 * The ctime text (local time, like Python's time.ctime()) is formatted once
 * per second per thread.
 *
 *   cc -O2 -pthread -o epoll_echo epoll_echo.c
 *   epoll_echo [--port N] [--threads N]   # prints "listening on 127.0.0.1:PORT"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (64 * 1024)
#define MAX_LINE (64 * 1024 + 2)
#define MAX_HEADER 64
/* Worst case: every byte a line of its own, each a header longer. */
#define OUT_SIZE (READ_SIZE * (MAX_HEADER + 1) + MAX_LINE + MAX_HEADER)

struct conn {
    int fd;
    size_t partial_len; /* bytes of a line not yet complete, in partial */
    char partial[MAX_LINE];
    size_t pending, sent; /* output not yet written (the socket was full) */
    char *out;
};

struct worker {
    int listener;
    char in[READ_SIZE];
    char *out;
    time_t second;
    char header[MAX_HEADER];
    size_t header_len;
};

static void stamp(struct worker *w) {
    time_t now = time(NULL);
    if (now == w->second && w->header_len) return;
    struct tm tm;
    localtime_r(&now, &tm);
    char text[48];
    strftime(text, sizeof text, "%a %b %e %H:%M:%S %Y", &tm);
    w->header_len = (size_t)snprintf(w->header, sizeof w->header, "[%s] ", text);
    w->second = now;
}

static void drop(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Writes out; 1 if all of it left, 0 if the socket is full, -1 on error. */
static int flush_out(struct conn *c, const char *out, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(c->fd, out + done, len - done);
        if (n > 0) { done += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->out && !(c->out = malloc(OUT_SIZE))) return -1;
            memmove(c->out, out + done, len - done);
            c->pending = len - done;
            c->sent = 0;
            return 0;
        }
        return -1;
    }
    c->pending = 0;
    return 1;
}

/* Answers one read (n > 0) or the end of input (n == 0) into w->out. */
static int answer(struct worker *w, struct conn *c, size_t n, size_t *len) {
    char *o = w->out;
    const char *p = w->in, *end = w->in + n;
    stamp(w);
    if (n == 0) {
        if (c->partial_len) {
            memcpy(o, w->header, w->header_len), o += w->header_len;
            memcpy(o, c->partial, c->partial_len), o += c->partial_len;
        }
        *len = (size_t)(o - w->out);
        return 0;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            size_t rest = (size_t)(end - p);
            if (c->partial_len + rest > MAX_LINE) return -1;
            memcpy(c->partial + c->partial_len, p, rest);
            c->partial_len += rest;
            break;
        }
        size_t line = (size_t)(nl + 1 - p);
        if (c->partial_len + line > MAX_LINE + 1) return -1;
        memcpy(o, w->header, w->header_len), o += w->header_len;
        if (c->partial_len) {
            memcpy(o, c->partial, c->partial_len), o += c->partial_len;
            c->partial_len = 0;
        }
        memcpy(o, p, line), o += line;
        p = nl + 1;
    }
    *len = (size_t)(o - w->out);
    return 0;
}

static void *serve(void *arg) {
    struct worker *w = arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, w->listener, &ev) < 0) { perror("epoll"); exit(1); }
    struct epoll_event events[64];
    for (;;) {
        int ready = epoll_wait(ep, events, 64, -1);
        if (ready < 0) { if (errno == EINTR) continue; perror("epoll_wait"); exit(1); }
        for (int i = 0; i < ready; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                int fd = accept4(w->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) continue;
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (!(c = calloc(1, sizeof *c))) { close(fd); continue; }
                c->fd = fd;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) { close(fd); free(c); }
                continue;
            }
            if (c->pending) { /* the socket had no room: finish that first */
                int r = flush_out(c, c->out + c->sent, c->pending);
                if (r < 0) { drop(ep, c); continue; }
                if (r == 0) continue;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                continue;
            }
            ssize_t n = read(c->fd, w->in, READ_SIZE);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                drop(ep, c);
                continue;
            }
            size_t len;
            if (answer(w, c, (size_t)n, &len) < 0) { drop(ep, c); continue; }
            int r = len ? flush_out(c, w->out, len) : 1;
            if (r < 0 || n == 0) { drop(ep, c); continue; }
            if (r == 0) {
                struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int port = 0;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atol(argv[i + 1]);
    }
    if (threads < 1) threads = 1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 1024) < 0 ||
        getsockname(l, (struct sockaddr *)&addr, &alen) < 0) {
        perror("listen");
        return 1;
    }
    tzset();
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    pthread_t tid;
    for (long t = 0; t < threads; t++) {
        struct worker *w = calloc(1, sizeof *w);
        if (!w || !(w->out = malloc(OUT_SIZE))) { perror("malloc"); return 1; }
        w->listener = l;
        if (t + 1 < threads) pthread_create(&tid, NULL, serve, w);
        else serve(w);
    }
    return 0;
}
