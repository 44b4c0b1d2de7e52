/*
 * A plain C host for mosn_extension.so: no Rust, only include/mosn_extension.h.
 * It plays the part Envoy or nginx plays (feed headers, apply the decision, connect to
 * the chosen host, report the outcome) and asserts the unit-routing behaviour of the
 * demo config.
 *
 * usage: c-host <mosn.json of examples/unit-routing>
 */
#define _DEFAULT_SOURCE
#include "mosn_extension.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            passed++;                                                           \
        } else {                                                                \
            failed++;                                                           \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                         \
            printf(__VA_ARGS__);                                                \
            printf("\n");                                                       \
        }                                                                       \
    } while (0)

static mosn_ext_bytes b(const char *s) {
    mosn_ext_bytes r = {(const uint8_t *)s, strlen(s)};
    return r;
}

static int eq(mosn_ext_bytes x, const char *s) {
    return x.len == strlen(s) && memcmp(x.ptr, s, x.len) == 0;
}

static void copy(char *dst, size_t cap, mosn_ext_bytes x) {
    size_t n = x.len < cap - 1 ? x.len : cap - 1;
    memcpy(dst, x.ptr, n);
    dst[n] = 0;
}

/* A request as a host would hold it: pseudo-headers plus the given name/value pairs. */
typedef struct {
    mosn_ext_header h[16];
    size_t n;
    mosn_ext_message msg;
} request;

static void req_init(request *r, const char **kv) {
    r->n = 0;
    r->h[r->n].name = b(":method"), r->h[r->n++].value = b("GET");
    r->h[r->n].name = b(":path"), r->h[r->n++].value = b("/");
    r->h[r->n].name = b(":authority"), r->h[r->n++].value = b("localhost:2990");
    for (; kv && kv[0]; kv += 2) {
        r->h[r->n].name = b(kv[0]);
        r->h[r->n++].value = b(kv[1]);
    }
    memset(&r->msg, 0, sizeof r->msg);
    r->msg.headers = r->h;
    r->msg.headers_len = r->n;
}

/* The host applies mutations in order; we only need to know the final unit header. */
static void unit_after(const mosn_ext_action *a, const request *r, char *out, size_t cap) {
    out[0] = 0;
    for (size_t i = 0; i < r->n; i++)
        if (eq(r->h[i].name, "x-mosn-on-envoy-unit")) copy(out, cap, r->h[i].value);
    for (size_t i = 0; i < a->mutations_len; i++) {
        const mosn_ext_header_mutation *m = &a->mutations[i];
        if (!eq(m->name, "x-mosn-on-envoy-unit")) continue;
        if (m->op == MOSN_EXT_HEADER_REMOVE) out[0] = 0;
        else copy(out, cap, m->value);
    }
}

typedef struct {
    char cluster[64];
    char host[64];
    char unit[16];
    uint32_t kind;
} result;

/* One request through the whole stream: headers → decision → host → success → done. */
static result run(mosn_ext_config *cfg, const char **kv) {
    result res;
    memset(&res, 0, sizeof res);
    request r;
    req_init(&r, kv);
    mosn_ext_stream *s = mosn_ext_stream_new(cfg, NULL, 0, NULL, NULL);
    if (!s) {
        res.kind = 99;
        return res;
    }
    mosn_ext_action a;
    res.kind = mosn_ext_stream_request_headers(s, &r.msg, true, &a);
    unit_after(&a, &r, res.unit, sizeof res.unit);
    if (res.kind == MOSN_EXT_CONTINUE) {
        mosn_ext_upstream up;
        if (mosn_ext_stream_choose_host(s, &up) == MOSN_EXT_HOST_OK) {
            copy(res.cluster, sizeof res.cluster, up.cluster);
            copy(res.host, sizeof res.host, up.address);
            mosn_ext_stream_upstream_result(s, MOSN_EXT_OUTCOME_RESPONSE, 200);
        }
    }
    mosn_ext_stream_destroy(s);
    return res;
}

/* The chosen host's sockaddr written back as "ip:port" ("[ip]:port" for IPv6) equals its
   address text. */
static bool sockaddr_is_address(const mosn_ext_upstream *up) {
    char ip[INET6_ADDRSTRLEN], text[80], want[80];
    if (up->sockaddr.len == sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memcpy(&sin, up->sockaddr.bytes, sizeof sin);
        if (sin.sin_family != AF_INET || !inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip)) return false;
        snprintf(text, sizeof text, "%s:%u", ip, ntohs(sin.sin_port));
    } else if (up->sockaddr.len == sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, up->sockaddr.bytes, sizeof sin6);
        if (sin6.sin6_family != AF_INET6 || !inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof ip)) return false;
        snprintf(text, sizeof text, "[%s]:%u", ip, ntohs(sin6.sin6_port));
    } else {
        return false;
    }
    copy(want, sizeof want, up->address);
    return strcmp(text, want) == 0;
}

static void expect_site(mosn_ext_config *cfg, const char *uid, const char *cluster) {
    const char *kv[] = {"uid", uid, NULL};
    result r = run(cfg, kv);
    CHECK(r.kind == MOSN_EXT_CONTINUE && strcmp(r.cluster, cluster) == 0,
          "uid %s -> cluster '%s' (kind %u), want %s", uid, r.cluster, r.kind, cluster);
}

/* === wake callback plumbing for the fault-delay case === */
static atomic_int wakes;
static void on_wake(void *ctx) {
    (void)ctx;
    atomic_fetch_add(&wakes, 1);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static const char *FAULT_JSON =
    "{\"servers\":[{\"routers\":[{\"router_config_name\":\"r\",\"virtual_hosts\":[{\"name\":\"v\",\"domains\":[\"*\"],"
    "\"routers\":[{\"match\":{\"prefix\":\"/\"},\"route\":{\"cluster_name\":\"c\"}}]}]}],"
    "\"listeners\":[{\"name\":\"l\",\"address\":\"127.0.0.1:2990\",\"bind_port\":true,"
    "\"filter_chains\":[{\"filters\":[{\"type\":\"proxy\",\"config\":{\"downstream_protocol\":\"Http1\","
    "\"router_config_name\":\"r\"}}]}],"
    "\"stream_filters\":[{\"type\":\"fault\",\"config\":{\"delay\":{\"fixed_delay\":\"60ms\",\"percentage\":100},"
    "\"headers\":[{\"name\":\"x-case\",\"value\":\"delay\"}]}}]}]}],"
    "\"cluster_manager\":{\"clusters\":[{\"name\":\"c\",\"hosts\":[{\"address\":\"127.0.0.1:1\"}]}]}}";

static const char *BODY_JSON =
    "{\"servers\":[{\"routers\":[{\"router_config_name\":\"r\",\"virtual_hosts\":[{\"name\":\"v\",\"domains\":[\"*\"],"
    "\"routers\":[{\"match\":{\"prefix\":\"/\",\"headers\":[{\"name\":\"x-mosn-on-envoy-unit\",\"value\":\"s2\"}]},"
    "\"route\":{\"cluster_name\":\"s2\"}},{\"match\":{\"prefix\":\"/\"},\"route\":{\"cluster_name\":\"c\"}}]}]}],"
    "\"listeners\":[{\"name\":\"l\",\"address\":\"127.0.0.1:2990\",\"bind_port\":true,"
    "\"filter_chains\":[{\"filters\":[{\"type\":\"proxy\",\"config\":{\"downstream_protocol\":\"Http1\","
    "\"router_config_name\":\"r\"}}]}],"
    "\"stream_filters\":[{\"type\":\"metadata\",\"config\":{\"metadataers\":[{\"meta_data_key\":\"UNIT\","
    "\"config\":{\"unit_key\":\"uid\",\"body_key\":\"uid\",\"trailers\":true}}]}},"
    "{\"type\":\"body_rewrite\",\"config\":{\"request_rules\":[{\"from\":\"a\",\"to\":\"bb\"}],"
    "\"response_rules\":[{\"from\":\"x\",\"to\":\"\"}]}}]}]}],"
    "\"cluster_manager\":{\"clusters\":[{\"name\":\"c\",\"hosts\":[{\"address\":\"127.0.0.1:1\"}]},"
    "{\"name\":\"s2\",\"hosts\":[{\"address\":\"127.0.0.1:2\"}]}]}}";

static int eqn(mosn_ext_bytes v, const char *s, size_t n) {
    return v.len == n && memcmp(v.ptr, s, n) == 0;
}

/* Bodies through the ABI: binary bytes (a NUL inside), a replaced request body, trailers,
   a held response whose body a send filter rewrites. */
static void test_bodies(void) {
    char *err = NULL;
    mosn_ext_config *bc = NULL;
    int rc = mosn_ext_config_load_json((const uint8_t *)BODY_JSON, strlen(BODY_JSON), &bc, &err);
    CHECK(rc == 0, "body config: %s", err ? err : "");
    if (rc != 0) return;
    CHECK(mosn_ext_config_check_host(bc, (const uint8_t *)"envoy", 5, NULL) == 0, "envoy takes trailers");
    CHECK(mosn_ext_config_check_host(bc, (const uint8_t *)"nginx", 5, &err) == 1 && err &&
              strstr(err, "stream_filters[0].config.metadataers[0].config.trailers"),
          "nginx refuses trailers: %s", err ? err : "(null)");
    mosn_ext_string_free(err);

    request r;
    req_init(&r, NULL);
    mosn_ext_stream *s = mosn_ext_stream_new(bc, NULL, 0, NULL, NULL);
    mosn_ext_action a;
    CHECK(mosn_ext_stream_request_headers(s, &r.msg, false, &a) == MOSN_EXT_BUFFER_BODY, "a body: buffer it");
    static const char body[] = "{\"uid\": 150, \"k\": \"a\\u0000a\"}";
    r.msg.body.ptr = (const uint8_t *)body;
    r.msg.body.len = sizeof body - 1;
    CHECK(mosn_ext_stream_request_body(s, &r.msg, true, &a) == MOSN_EXT_CONTINUE, "whole body -> CONTINUE");
    mosn_ext_route route;
    CHECK(mosn_ext_stream_route(s, &route) && eq(route.cluster, "s2"), "uid 150 in the body -> s2");
    mosn_ext_bytes nb;
    static const char want[] = "{\"uid\": 150, \"k\": \"bb\\u0000bb\"}";
    CHECK(mosn_ext_stream_replaced_body(s, &nb) && eqn(nb, want, sizeof want - 1), "request body replaced");

    /* the response: held for its body, which loses its x bytes (and keeps a NUL) */
    mosn_ext_message resp;
    memset(&resp, 0, sizeof resp);
    CHECK(mosn_ext_stream_response_headers(s, 200, &resp, false, &a) == MOSN_EXT_BUFFER_BODY, "response held");
    static const char rb[] = "xAx\0Bx";
    resp.body.ptr = (const uint8_t *)rb;
    resp.body.len = sizeof rb - 1;
    CHECK(mosn_ext_stream_response_body(s, &resp, true, &a) == MOSN_EXT_CONTINUE, "response body -> CONTINUE");
    CHECK(mosn_ext_stream_replaced_response_body(s, &nb) && eqn(nb, "A\0B", 3), "response body rewritten (len %zu)", nb.len);
    mosn_ext_stream_destroy(s);

    /* trailers end the body: the uid comes from one */
    s = mosn_ext_stream_new(bc, NULL, 0, NULL, NULL);
    req_init(&r, NULL);
    CHECK(mosn_ext_stream_request_headers(s, &r.msg, false, &a) == MOSN_EXT_BUFFER_BODY, "chunked: buffer it");
    mosn_ext_header t[1] = {{b("uid"), b("120")}};
    r.msg.body.ptr = (const uint8_t *)"zz";
    r.msg.body.len = 2;
    r.msg.trailers = t;
    r.msg.trailers_len = 1;
    CHECK(mosn_ext_stream_request_trailers(s, &r.msg, &a) == MOSN_EXT_CONTINUE, "trailers -> CONTINUE");
    CHECK(mosn_ext_stream_route(s, &route) && eq(route.cluster, "s2"), "trailer uid 120 -> s2");
    CHECK(!mosn_ext_stream_replaced_body(s, &nb), "nothing to replace in zz");
    mosn_ext_stream_destroy(s);
    CHECK(mosn_ext_live_streams() == 0, "no stream left (%llu)", (unsigned long long)mosn_ext_live_streams());
    mosn_ext_config_free(bc);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s mosn.json\n", argv[0]);
        return 2;
    }
    CHECK(mosn_ext_abi_version() == MOSN_EXT_ABI_VERSION, "ABI version %u != header %u",
          mosn_ext_abi_version(), MOSN_EXT_ABI_VERSION);

    mosn_ext_config *cfg = NULL;
    char *err = NULL;
    int rc = mosn_ext_config_load_file(argv[1], &cfg, &err);
    CHECK(rc == 0 && cfg != NULL, "load %s: rc=%d err=%s", argv[1], rc, err ? err : "");
    if (rc != 0) return 1;

    /* seed 004: uid 2 twice -> s1's two hosts in turn */
    {
        const char *kv[] = {"uid", "2", NULL};
        result r1 = run(cfg, kv), r2 = run(cfg, kv);
        CHECK(strcmp(r1.cluster, "s1") == 0 && strcmp(r2.cluster, "s1") == 0, "uid 2 -> %s, %s", r1.cluster, r2.cluster);
        CHECK(strcmp(r1.host, r2.host) != 0, "uid 2 twice should alternate s1's hosts: %s, %s", r1.host, r2.host);
        CHECK(strcmp(r1.unit, "s1") == 0, "uid 2 sets x-mosn-on-envoy-unit: s1, got '%s'", r1.unit);
    }
    expect_site(cfg, "100", "s1");
    expect_site(cfg, "101", "s2");
    expect_site(cfg, "200", "s2");
    expect_site(cfg, "201", "s3");
    expect_site(cfg, "0", "s3");
    expect_site(cfg, "-1", "s3");

    /* no uid -> round robin over all four hosts */
    {
        char seen[4][64];
        int distinct = 0;
        for (int i = 0; i < 4; i++) {
            result r = run(cfg, NULL);
            CHECK(strcmp(r.cluster, "all_sites") == 0 && r.unit[0] == 0, "no uid -> %s unit '%s'", r.cluster, r.unit);
            int dup = 0;
            for (int j = 0; j < distinct; j++) dup |= strcmp(seen[j], r.host) == 0;
            if (!dup) strcpy(seen[distinct++], r.host);
        }
        CHECK(distinct == 4, "4 requests without uid reached %d distinct hosts, want 4", distinct);
    }
    /* non-integer uid and forged unit header: treated as no uid */
    {
        const char *abc[] = {"uid", "abc", NULL};
        result r = run(cfg, abc);
        CHECK(strcmp(r.cluster, "all_sites") == 0 && r.unit[0] == 0, "uid abc -> %s unit '%s'", r.cluster, r.unit);
        const char *forged[] = {"x-mosn-on-envoy-unit", "s2", NULL};
        r = run(cfg, forged);
        CHECK(strcmp(r.cluster, "all_sites") == 0 && r.unit[0] == 0, "forged unit s2 -> %s unit '%s'", r.cluster, r.unit);
        const char *forged_uid[] = {"x-mosn-on-envoy-unit", "s3", "uid", "5", NULL};
        r = run(cfg, forged_uid);
        CHECK(strcmp(r.cluster, "s1") == 0 && strcmp(r.unit, "s1") == 0, "forged s3 + uid 5 -> %s unit '%s'", r.cluster, r.unit);
    }
    /* retry after a connect failure never returns the failed host when another exists */
    for (int round = 0; round < 6; round++) {
        request r;
        const char *kv[] = {"uid", "7", NULL};
        req_init(&r, kv);
        mosn_ext_stream *s = mosn_ext_stream_new(cfg, (const uint8_t *)"serverListener", 14, NULL, NULL);
        mosn_ext_action a;
        CHECK(mosn_ext_stream_request_headers(s, &r.msg, true, &a) == MOSN_EXT_CONTINUE, "uid 7 continues");
        mosn_ext_route route;
        CHECK(mosn_ext_stream_route(s, &route) && eq(route.cluster, "s1") && route.max_attempts == 2,
              "route s1 with 1 retry (max_attempts %u)", route.max_attempts);
        mosn_ext_upstream u1, u2;
        CHECK(mosn_ext_stream_choose_host(s, &u1) == MOSN_EXT_HOST_OK, "first host");
        char first[64];
        copy(first, sizeof first, u1.address);
        CHECK(sockaddr_is_address(&u1), "the first host's sockaddr (len %u) is its address %s", u1.sockaddr.len, first);
        bool retry = mosn_ext_stream_upstream_result(s, MOSN_EXT_OUTCOME_CONNECT_FAILURE, 0);
        CHECK(retry, "connect failure is retried by s1's policy");
        CHECK(mosn_ext_stream_choose_host(s, &u2) == MOSN_EXT_HOST_OK, "retry host");
        CHECK(!eq(u2.address, first) && u2.attempt == 2, "retry returned the failed host %s (attempt %u)", first, u2.attempt);
        CHECK(sockaddr_is_address(&u2), "the retry host's sockaddr is its address");
        CHECK(!mosn_ext_stream_upstream_result(s, MOSN_EXT_OUTCOME_CONNECT_FAILURE, 0), "budget spent: no third attempt");
        mosn_ext_stream_destroy(s);
    }
    /* info for logs */
    {
        request r;
        const char *kv[] = {"uid", "150", NULL};
        req_init(&r, kv);
        mosn_ext_stream *s = mosn_ext_stream_new(cfg, NULL, 0, NULL, NULL);
        mosn_ext_action a;
        mosn_ext_stream_request_headers(s, &r.msg, true, &a);
        mosn_ext_bytes v;
        CHECK(mosn_ext_stream_info(s, MOSN_EXT_INFO_METADATA, (const uint8_t *)"unit", 4, &v) && eq(v, "s2"), "$mosn_unit = s2");
        CHECK(mosn_ext_stream_info(s, MOSN_EXT_INFO_CLUSTER, NULL, 0, &v) && eq(v, "s2"), "$mosn_cluster = s2");
        CHECK(!mosn_ext_stream_info(s, MOSN_EXT_INFO_UPSTREAM_HOST, NULL, 0, &v), "no upstream host before choose_host");
        mosn_ext_stream_destroy(s);
    }
    /* unknown listener */
    CHECK(mosn_ext_stream_new(cfg, (const uint8_t *)"nope", 4, NULL, NULL) == NULL, "unknown listener -> NULL");
    mosn_ext_config_free(cfg);

    /* a bad config is refused with the JSON path in the message */
    {
        const char *bad = "{\"cluster_manager\":{\"clusters\":[{\"name\":\"a\",\"hosts\":[{\"address\":\"127.0.0.1:1\"}]},"
                          "{\"name\":\"b\",\"hosts\":[{\"address\":\"127.0.0.1\"}]}]}}";
        mosn_ext_config *c2 = NULL;
        char *e2 = NULL;
        rc = mosn_ext_config_load_json((const uint8_t *)bad, strlen(bad), &c2, &e2);
        CHECK(rc == 1 && c2 == NULL && e2 && strstr(e2, "cluster_manager.clusters[1].hosts[0].address") &&
                  strstr(e2, "has no port"),
              "bad config: rc=%d err=%s", rc, e2 ? e2 : "(null)");
        mosn_ext_string_free(e2);
        const char *typo = "{\"servers\":[{\"listeners\":[{\"name\":\"l\",\"address\":\"127.0.0.1:1\","
                           "\"stream_filters\":[{\"type\":\"metadat\"}]}]}]}";
        e2 = NULL;
        rc = mosn_ext_config_load_json((const uint8_t *)typo, strlen(typo), &c2, &e2);
        CHECK(rc == 1 && e2 && strstr(e2, "servers[0].listeners[0].stream_filters[0].type: unknown filter \"metadat\""),
              "filter typo: %s", e2 ? e2 : "(null)");
        mosn_ext_string_free(e2);
    }

    /* stop-and-wait: the fault delay parks the stream; the wake comes from a library
       thread exactly once; a stream destroyed while parked is never woken */
    {
        mosn_ext_config *fc = NULL;
        rc = mosn_ext_config_load_json((const uint8_t *)FAULT_JSON, strlen(FAULT_JSON), &fc, &err);
        CHECK(rc == 0, "fault config: %s", err ? err : "");
        request r;
        const char *kv[] = {"x-case", "delay", NULL};
        req_init(&r, kv);
        mosn_ext_stream *s = mosn_ext_stream_new(fc, NULL, 0, on_wake, NULL);
        mosn_ext_action a;
        double t0 = now_ms();
        CHECK(mosn_ext_stream_request_headers(s, &r.msg, true, &a) == MOSN_EXT_WAIT, "delay -> WAIT");
        while (atomic_load(&wakes) == 0 && now_ms() - t0 < 2000) usleep(1000);
        double waited = now_ms() - t0;
        CHECK(atomic_load(&wakes) == 1 && waited >= 55, "woken once after %.0f ms (wakes %d)", waited, atomic_load(&wakes));
        CHECK(mosn_ext_stream_resume(s, &r.msg, &a) == MOSN_EXT_CONTINUE, "resume -> CONTINUE");
        mosn_ext_stream_destroy(s);

        s = mosn_ext_stream_new(fc, NULL, 0, on_wake, NULL);
        CHECK(mosn_ext_stream_request_headers(s, &r.msg, true, &a) == MOSN_EXT_WAIT, "second delay -> WAIT");
        mosn_ext_stream_destroy(s); /* client went away while parked */
        usleep(150 * 1000);
        CHECK(atomic_load(&wakes) == 1, "no wake after destroy (wakes %d)", atomic_load(&wakes));

        /* a waiting filter without a wake function fails closed */
        s = mosn_ext_stream_new(fc, NULL, 0, NULL, NULL);
        CHECK(mosn_ext_stream_request_headers(s, &r.msg, true, &a) == MOSN_EXT_LOCAL_REPLY && a.status == 500,
              "no wake fn -> 500 (kind %u status %u)", a.kind, a.status);
        mosn_ext_stream_destroy(s);
        mosn_ext_config_free(fc);
    }

    test_bodies();

    /* state shared by worker processes (what nginx does with a shared zone): round robin
       continues across processes */
    {
        mosn_ext_config *sc = NULL;
        rc = mosn_ext_config_load_file(argv[1], &sc, &err);
        size_t size = mosn_ext_config_state_size(sc);
        CHECK(rc == 0 && size > 0, "state size %zu", size);
        void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        char *e3 = NULL;
        CHECK(mosn_ext_config_share_state(sc, mem, size, &e3) == 0, "share state: %s", e3 ? e3 : "");
        CHECK(mosn_ext_config_share_state(sc, mem, 8, &e3) == -1 && e3, "too small region refused");
        mosn_ext_string_free(e3);
        const char *kv[] = {"uid", "2", NULL};
        /* the child's verdict comes through a pipe, not its exit status (valgrind sets that
           to its own error code: memory a thread of the parent held looks lost in a child) */
        int verdict[2];
        CHECK(pipe(verdict) == 0, "pipe");
        pid_t child = fork();
        if (child == 0) { /* another worker process serves one uid:2 request */
            result r = run(sc, kv);
            char ok = strcmp(r.cluster, "s1") == 0 ? 'y' : 'n';
            if (write(verdict[1], &ok, 1) != 1) _exit(1);
            _exit(0);
        }
        close(verdict[1]);
        char got = 0;
        int status = 0;
        waitpid(child, &status, 0);
        CHECK(read(verdict[0], &got, 1) == 1 && got == 'y', "child request (verdict %c)", got ? got : '-');
        close(verdict[0]);
        /* the child took s1's first host; this process must get the second one */
        result mine = run(sc, kv);
        CHECK(strcmp(mine.host, "127.0.0.1:3451") == 0, "after the other process's request, round robin gives %s, want 127.0.0.1:3451", mine.host);

        /* the counters are shared too: s1 counts both processes' requests */
        size_t nc = mosn_ext_config_cluster_count(sc), s1 = nc;
        for (size_t i = 0; i < nc; i++) {
            mosn_ext_cluster_stats cs;
            if (mosn_ext_config_cluster_stats(sc, i, &cs) && eq(cs.name, "s1")) {
                s1 = i;
                CHECK(cs.rq_total == 2 && cs.rq_active == 0 && cs.hosts == 2 && cs.healthy_hosts == 2,
                      "s1 stats: total %llu active %llu hosts %llu healthy %llu", (unsigned long long)cs.rq_total,
                      (unsigned long long)cs.rq_active, (unsigned long long)cs.hosts, (unsigned long long)cs.healthy_hosts);
            }
        }
        CHECK(s1 < nc, "cluster s1 in the stats");
        mosn_ext_host_stats hs;
        CHECK(mosn_ext_config_host_stats(sc, s1, 1, &hs) && eq(hs.address, "127.0.0.1:3451") && hs.rq_total == 1 &&
                  hs.health_flags == 0,
              "s1 host 1 stats");
        CHECK(!mosn_ext_config_host_stats(sc, s1, 2, &hs) && !mosn_ext_config_cluster_stats(sc, nc, NULL), "out of range");
        mosn_ext_config_free(sc);
        munmap(mem, size);
    }

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
