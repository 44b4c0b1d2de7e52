/*
 * A scripted stand-in for mosn_extension.so (same ABI, same SONAME) that drives the
 * nginx module through paths the real core does not reach today (no core filter
 * buffers bodies, replies with headers or mutates responses). Used by
 * nginx-module/test/run-fake.sh only; never installed.
 *
 * The request header `x-fake` picks the script:
 *   reply     LOCAL_REPLY 418, reply headers (x-fake-reply, content-type), details
 *   mutate    CONTINUE: SET x-mosn-on-envoy-unit, ADD it again, REMOVE x-remove-me;
 *             response: :status 201, SET x-backend-site, ADD x-added, REMOVE x-seen-path
 *   wait      WAIT (a thread wakes it after 50 ms), resume -> CONTINUE
 *   body      BUFFER_BODY -> LOCAL_REPLY 200 "len=N sum=S"
 *   bodywait  BUFFER_BODY -> WAIT -> resume (body passed again) -> LOCAL_REPLY
 *   mirror    [BUFFER_BODY ->] CONTINUE: SET x-mirror-set, REMOVE x-remove-me, and
 *             SET :path to `x-fake-path` if given; then one mirror copy per address
 *             in `x-fake-mirror` (comma-separated, cluster "fake-mirror"); the request
 *             itself goes to `x-fake-upstream` if given
 *   (other)   CONTINUE
 * Upstream: $FAKE_UPSTREAM ("ip:port"), cluster "fake", 1 attempt.
 */

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "mosn_extension.h"

struct mosn_ext_config {
    int  unused;
};

typedef struct {
    pthread_mutex_t  lock;
    int              refs;
    int              closed;
    void           (*wake)(void *);
    void            *ctx;
} waiter;

struct mosn_ext_stream {
    char                      mode[16];
    int                       waited;
    void                    (*wake)(void *);
    void                     *ctx;
    waiter                   *w;
    char                      addr[64];
    int                       chosen;
    char                      text[256];
    char                      ct[128];
    mosn_ext_header_mutation  muts[8];
    mosn_ext_header           rh[2];
    char                      path[256];
    char                      mirror_list[512];
    char                     *mirrors[8];
    uint32_t                  nmirrors;
    int                       continued;
};

static void (*log_cb)(uint32_t, const uint8_t *, size_t, void *);
static void *log_ctx;

static void
say(uint32_t level, const char *msg)
{
    if (log_cb) {
        log_cb(level, (const uint8_t *) msg, strlen(msg), log_ctx);
    }
}

static mosn_ext_bytes
b(const char *s)
{
    mosn_ext_bytes r = { (const uint8_t *) s, strlen(s) };
    return r;
}

static int
find(const mosn_ext_message *m, const char *name, char *out, size_t cap)
{
    size_t i, n = strlen(name);

    if (m == NULL || m->headers == NULL) {
        return 0;
    }

    for (i = 0; i < m->headers_len; i++) {
        const mosn_ext_header *h = &m->headers[i];

        if (h->name.len == n && strncasecmp((const char *) h->name.ptr, name, n) == 0) {
            size_t l = h->value.len < cap - 1 ? h->value.len : cap - 1;
            memcpy(out, h->value.ptr, l);
            out[l] = '\0';
            return 1;
        }
    }

    return 0;
}

uint32_t
mosn_ext_abi_version(void)
{
    const char *v = getenv("FAKE_ABI");
    return v ? (uint32_t) atoi(v) : MOSN_EXT_ABI_VERSION;
}

const char *
mosn_ext_version(void)
{
    return "fake";
}

void
mosn_ext_set_log_callback(void (*cb)(uint32_t, const uint8_t *, size_t, void *), void *ctx)
{
    log_cb = cb;
    log_ctx = ctx;
}

void
mosn_ext_set_log_level(uint32_t level)
{
    (void) level;
}

int32_t
mosn_ext_config_load_file(const char *path, mosn_ext_config **out, char **err)
{
    char   buf[4096];
    FILE  *f;
    size_t n;

    f = fopen(path, "r");
    if (f == NULL) {
        *err = strdup("cannot open file");
        return 1;
    }

    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';

    if (strstr(buf, "bad")) {
        if (err) {
            *err = strdup("fake.clusters[0].hosts[0].address: \"bad\" has no port");
        }
        return 1;
    }

    say(2, "fake: config loaded");
    *out = calloc(1, sizeof(mosn_ext_config));
    return *out ? 0 : -1;
}

int32_t
mosn_ext_config_load_json(const uint8_t *json, size_t len, mosn_ext_config **out, char **err)
{
    (void) json; (void) len; (void) err;
    *out = calloc(1, sizeof(mosn_ext_config));
    return 0;
}

void mosn_ext_config_free(mosn_ext_config *cfg) { free(cfg); }
/* No upstream state in the fake: the module then adds no shared zone. */
size_t mosn_ext_config_state_size(const mosn_ext_config *cfg) { (void) cfg; return 0; }
int32_t mosn_ext_config_share_state(const mosn_ext_config *cfg, void *mem, size_t len, char **err)
{ (void) cfg; (void) mem; (void) len; (void) err; return 0; }
int32_t mosn_ext_config_inherit_state(const mosn_ext_config *cfg, const mosn_ext_config *old)
{ (void) cfg; (void) old; return 0; }
void mosn_ext_string_free(char *s) { free(s); }
size_t mosn_ext_config_listener_count(const mosn_ext_config *cfg) { (void) cfg; return 1; }
bool mosn_ext_config_start_health_checks(const mosn_ext_config *cfg) { (void) cfg; return false; }
bool mosn_ext_config_start_dns_refresh(const mosn_ext_config *cfg) { (void) cfg; return false; }
uint64_t mosn_ext_live_streams(void) { return 0; }
int32_t mosn_ext_config_admin(const mosn_ext_config *cfg, const uint8_t *m, size_t ml, const uint8_t *t, size_t tl,
    const uint8_t *b, size_t bl, uint32_t *status, char **out)
{ (void) cfg; (void) m; (void) ml; (void) t; (void) tl; (void) b; (void) bl; *status = 404; *out = strdup(""); return 0; }
int32_t mosn_ext_config_metrics(const mosn_ext_config *cfg, char **out)
{ (void) cfg; *out = strdup(""); return 0; }
int32_t mosn_ext_config_check_host(const mosn_ext_config *cfg, const uint8_t *host, size_t len, char **err)
{ (void) cfg; (void) host; (void) len; (void) err; return 0; }
bool mosn_ext_stream_replaced_body(const mosn_ext_stream *s, mosn_ext_bytes *out)
{ (void) s; (void) out; return false; }
bool mosn_ext_stream_replaced_response_body(const mosn_ext_stream *s, mosn_ext_bytes *out)
{ (void) s; (void) out; return false; }
size_t mosn_ext_config_cluster_count(const mosn_ext_config *cfg) { (void) cfg; return 0; }
bool mosn_ext_config_cluster_stats(const mosn_ext_config *cfg, size_t i, mosn_ext_cluster_stats *out)
{ (void) cfg; (void) i; (void) out; return false; }
bool mosn_ext_config_host_stats(const mosn_ext_config *cfg, size_t c, size_t h, mosn_ext_host_stats *out)
{ (void) cfg; (void) c; (void) h; (void) out; return false; }
void mosn_ext_stream_set_downstream_address(mosn_ext_stream *s, const uint8_t *a, size_t len)
{ (void) s; (void) a; (void) len; }

bool
mosn_ext_config_listener(const mosn_ext_config *cfg, size_t index, mosn_ext_bytes *name,
    mosn_ext_bytes *address)
{
    (void) cfg;
    if (index != 0) {
        return false;
    }
    if (name) {
        *name = b("fakeListener");
    }
    if (address) {
        *address = b("127.0.0.1:1");
    }
    return true;
}

mosn_ext_stream *
mosn_ext_stream_new(const mosn_ext_config *cfg, const uint8_t *listener, size_t len,
    void (*wake)(void *), void *wake_ctx)
{
    mosn_ext_stream *s;
    const char      *up;

    if (cfg == NULL || len != 12 || memcmp(listener, "fakeListener", 12) != 0) {
        return NULL;
    }

    s = calloc(1, sizeof(mosn_ext_stream));
    if (s == NULL) {
        return NULL;
    }

    s->wake = wake;
    s->ctx = wake_ctx;
    up = getenv("FAKE_UPSTREAM");
    snprintf(s->addr, sizeof(s->addr), "%s", up ? up : "127.0.0.1:1");
    return s;
}

static void
waiter_put(waiter *w)
{
    int last;

    pthread_mutex_lock(&w->lock);
    last = --w->refs == 0;
    pthread_mutex_unlock(&w->lock);

    if (last) {
        pthread_mutex_destroy(&w->lock);
        free(w);
    }
}

static void *
wake_thread(void *arg)
{
    waiter          *w = arg;
    struct timespec  ts = { 0, 50 * 1000 * 1000 };

    nanosleep(&ts, NULL);
    say(3, "fake: waking a stream from a library thread");

    pthread_mutex_lock(&w->lock);
    if (!w->closed) {
        w->wake(w->ctx);
    }
    pthread_mutex_unlock(&w->lock);

    waiter_put(w);
    return NULL;
}

static uint32_t
start_wait(mosn_ext_stream *s, mosn_ext_action *out)
{
    pthread_t  t;
    waiter    *w;

    if (s->wake == NULL || s->w != NULL) {
        return MOSN_EXT_CONTINUE;
    }

    w = calloc(1, sizeof(waiter));
    pthread_mutex_init(&w->lock, NULL);
    w->refs = 2;
    w->wake = s->wake;
    w->ctx = s->ctx;
    s->w = w;
    s->waited = 1;

    if (pthread_create(&t, NULL, wake_thread, w) != 0) {
        abort();
    }
    pthread_detach(t);

    out->kind = MOSN_EXT_WAIT;
    return out->kind;
}

static void
close_wait(mosn_ext_stream *s)
{
    if (s->w) {
        pthread_mutex_lock(&s->w->lock);
        s->w->closed = 1;
        pthread_mutex_unlock(&s->w->lock);
        waiter_put(s->w);
        s->w = NULL;
    }
}

static uint32_t
reply(mosn_ext_stream *s, mosn_ext_action *out, uint32_t status, const char *details)
{
    out->kind = MOSN_EXT_LOCAL_REPLY;
    out->status = status;
    out->reply_body = b(s->text);
    out->details = b(details);
    s->rh[0].name = b("X-Fake-Reply");
    s->rh[0].value = b("yes");
    s->rh[1].name = b("Content-Type");
    s->rh[1].value = b("application/x-fake");
    out->reply_headers = s->rh;
    out->reply_headers_len = 2;
    return out->kind;
}

static uint32_t
body_reply(mosn_ext_stream *s, const mosn_ext_message *req, mosn_ext_action *out, const char *tag)
{
    size_t    i;
    uint32_t  sum = 0;

    if (req->body.ptr == NULL) {
        snprintf(s->text, sizeof(s->text), "no body (%s)\n", tag);
    } else {
        for (i = 0; i < req->body.len; i++) {
            sum = sum * 31 + req->body.ptr[i];
        }
        snprintf(s->text, sizeof(s->text), "len=%zu sum=%u %s\n", req->body.len, sum, tag);
    }

    return reply(s, out, 200, "fake_body");
}

/* mode "mirror": the request goes upstream (with mutations); its copies are known now */
static uint32_t
mirror_continue(mosn_ext_stream *s, mosn_ext_action *out)
{
    size_t n = 0;

    s->muts[n++] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_SET, b("x-mirror-set"), b("yes") };
    s->muts[n++] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_REMOVE, b("x-remove-me"), b("") };
    if (s->path[0]) {
        s->muts[n++] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_SET, b(":path"), b(s->path) };
    }
    out->mutations = s->muts;
    out->mutations_len = n;
    s->continued = 1;
    return out->kind = MOSN_EXT_CONTINUE;
}

static void
mirror_parse(mosn_ext_stream *s, const mosn_ext_message *req)
{
    char *p, *save = NULL;

    if (!find(req, "x-fake-path", s->path, sizeof(s->path))) {
        s->path[0] = '\0';
    }
    (void) find(req, "x-fake-upstream", s->addr, sizeof(s->addr));
    if (!find(req, "x-fake-mirror", s->mirror_list, sizeof(s->mirror_list))) {
        return;
    }
    for (p = strtok_r(s->mirror_list, ",", &save); p && s->nmirrors < 8; p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ') {
            p++;
        }
        s->mirrors[s->nmirrors++] = p;
    }
}

uint32_t
mosn_ext_stream_mirror_count(const mosn_ext_stream *s)
{
    return (s && s->continued) ? s->nmirrors : 0;
}

/* "a.b.c.d:port" as the library hands it: a sockaddr_in (len 0 if not that form) */
static mosn_ext_sockaddr
fake_sockaddr(const char *addr)
{
    mosn_ext_sockaddr  out;
    struct sockaddr_in sin;
    char               ip[64];
    const char        *colon = strrchr(addr, ':');
    size_t             n = colon ? (size_t) (colon - addr) : 0;

    memset(&out, 0, sizeof(out));
    memset(&sin, 0, sizeof(sin));
    if (colon == NULL || n == 0 || n >= sizeof(ip)) {
        return out;
    }
    memcpy(ip, addr, n);
    ip[n] = '\0';
    if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
        return out;
    }
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) atoi(colon + 1));
    memcpy(out.bytes, &sin, sizeof(sin));
    out.len = sizeof(sin);
    return out;
}

bool
mosn_ext_stream_mirror(const mosn_ext_stream *s, uint32_t i, mosn_ext_upstream *out)
{
    if (s == NULL || out == NULL || !s->continued || i >= s->nmirrors) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->cluster = b("fake-mirror");
    out->address = b(s->mirrors[i]);
    out->sockaddr = fake_sockaddr(s->mirrors[i]);
    out->host_index = i;
    return true;
}

uint32_t
mosn_ext_stream_request_headers(mosn_ext_stream *s, const mosn_ext_message *req, bool eos,
    mosn_ext_action *out)
{
    memset(out, 0, sizeof(*out));

    if (!find(req, "x-fake", s->mode, sizeof(s->mode))) {
        s->mode[0] = '\0';
    }

    if (strcmp(s->mode, "reply") == 0) {
        snprintf(s->text, sizeof(s->text), "fake reply\n");
        return reply(s, out, 418, "fake_reply");
    }

    if (strcmp(s->mode, "mutate") == 0) {
        s->muts[0] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_SET, b("X-Mosn-On-Envoy-Unit"), b("s9") };
        s->muts[1] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_ADD, b("x-mosn-on-envoy-unit"), b("s10") };
        s->muts[2] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_REMOVE, b("x-remove-me"), b("") };
        out->mutations = s->muts;
        out->mutations_len = 3;
        return out->kind = MOSN_EXT_CONTINUE;
    }

    if (strcmp(s->mode, "wait") == 0) {
        return start_wait(s, out);
    }

    if (strcmp(s->mode, "mirror") == 0) {
        mirror_parse(s, req);
        return eos ? mirror_continue(s, out) : (out->kind = MOSN_EXT_BUFFER_BODY);
    }

    if (strcmp(s->mode, "body") == 0 || strcmp(s->mode, "bodywait") == 0) {
        if (!eos) {
            return out->kind = MOSN_EXT_BUFFER_BODY;
        }
        snprintf(s->text, sizeof(s->text), "eos without body\n");
        return reply(s, out, 200, "fake_body");
    }

    return out->kind = MOSN_EXT_CONTINUE;
}

uint32_t
mosn_ext_stream_request_body(mosn_ext_stream *s, const mosn_ext_message *req, bool eos,
    mosn_ext_action *out)
{
    memset(out, 0, sizeof(*out));

    if (!eos) {
        return out->kind = MOSN_EXT_BUFFER_BODY;
    }

    if (strcmp(s->mode, "bodywait") == 0 && !s->waited) {
        return start_wait(s, out);
    }

    if (strcmp(s->mode, "mirror") == 0) {
        return mirror_continue(s, out);
    }

    return body_reply(s, req, out, "direct");
}

uint32_t
mosn_ext_stream_request_trailers(mosn_ext_stream *s, const mosn_ext_message *req, mosn_ext_action *out)
{
    return mosn_ext_stream_request_body(s, req, true, out);
}

uint32_t
mosn_ext_stream_resume(mosn_ext_stream *s, const mosn_ext_message *req, mosn_ext_action *out)
{
    memset(out, 0, sizeof(*out));
    close_wait(s);

    if (strcmp(s->mode, "bodywait") == 0) {
        return body_reply(s, req, out, "resumed");
    }

    s->muts[0] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_SET, b("uid"), b("5") };
    out->mutations = s->muts;
    out->mutations_len = 1;
    return out->kind = MOSN_EXT_CONTINUE;
}

bool
mosn_ext_stream_route(const mosn_ext_stream *s, mosn_ext_route *out)
{
    (void) s;
    memset(out, 0, sizeof(*out));
    out->cluster = b("fake");
    out->max_attempts = 1;
    out->connect_timeout_ms = 700;
    return true;
}

int32_t
mosn_ext_stream_choose_host(mosn_ext_stream *s, mosn_ext_upstream *out)
{
    s->chosen++;
    out->cluster = b("fake");
    out->address = b(s->addr);
    out->sockaddr = fake_sockaddr(s->addr);
    out->host_index = 0;
    out->attempt = (uint32_t) s->chosen;
    return MOSN_EXT_HOST_OK;
}

bool
mosn_ext_stream_upstream_result(mosn_ext_stream *s, uint32_t outcome, uint32_t status)
{
    char line[96];

    snprintf(line, sizeof(line), "fake: upstream result outcome=%u status=%u", outcome, status);
    say(2, line);
    (void) s;
    return false;
}

bool
mosn_ext_stream_reads_response_headers(const mosn_ext_stream *s)
{
    (void) s;
    return true;                       /* the scripted modes read them */
}

uint32_t
mosn_ext_stream_response_headers(mosn_ext_stream *s, uint32_t status, const mosn_ext_message *resp,
    bool eos, mosn_ext_action *out)
{
    (void) status; (void) eos;
    memset(out, 0, sizeof(*out));

    if (strcmp(s->mode, "mutate") == 0) {
        if (!find(resp, "content-type", s->ct, sizeof(s->ct))) {
            strcpy(s->ct, "none");
        }
        s->muts[0] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_SET, b(":status"), b("201") };
        s->muts[1] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_SET, b("x-backend-site"), b("changed") };
        s->muts[2] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_ADD, b("x-added"), b("one") };
        s->muts[3] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_REMOVE, b("x-seen-path"), b("") };
        s->muts[4] = (mosn_ext_header_mutation) { MOSN_EXT_HEADER_SET, b("x-fake-saw-ct"), b(s->ct) };
        out->mutations = s->muts;
        out->mutations_len = 5;
    }

    return out->kind = MOSN_EXT_CONTINUE;
}

uint32_t
mosn_ext_stream_response_body(mosn_ext_stream *s, const mosn_ext_message *resp, bool eos,
    mosn_ext_action *out)
{
    (void) s; (void) resp; (void) eos;
    memset(out, 0, sizeof(*out));
    return MOSN_EXT_CONTINUE;
}

uint32_t
mosn_ext_stream_response_trailers(mosn_ext_stream *s, const mosn_ext_message *resp, mosn_ext_action *out)
{
    (void) s; (void) resp;
    memset(out, 0, sizeof(*out));
    return MOSN_EXT_CONTINUE;
}

bool
mosn_ext_stream_info(const mosn_ext_stream *s, uint32_t what, const uint8_t *key, size_t key_len,
    mosn_ext_bytes *out)
{
    switch (what) {
    case MOSN_EXT_INFO_CLUSTER:
        *out = b("fake");
        return true;
    case MOSN_EXT_INFO_UPSTREAM_HOST:
        if (!s->chosen) {
            return false;
        }
        *out = b(s->addr);
        return true;
    case MOSN_EXT_INFO_METADATA:
        if (key_len == 4 && memcmp(key, "unit", 4) == 0) {
            *out = b("u-fake");
            return true;
        }
        if (key_len == 4 && memcmp(key, "mode", 4) == 0 && s->mode[0]) {
            *out = b(s->mode);
            return true;
        }
        return false;
    }
    return false;
}

uint32_t
mosn_ext_stream_attempts(const mosn_ext_stream *s)
{
    return (uint32_t) s->chosen;
}

uint32_t
mosn_ext_stream_flags(const mosn_ext_stream *s)
{
    return s->waited ? MOSN_EXT_FLAG_DELAY_INJECTED : 0;
}

void
mosn_ext_stream_destroy(mosn_ext_stream *s)
{
    if (s) {
        close_wait(s);
        free(s);
    }
}
