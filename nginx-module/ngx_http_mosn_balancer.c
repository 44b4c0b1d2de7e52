/*
 * The mosn_upstream balancer: the hosts come from the cluster the MOSN router chose.
 *
 *   init_peer       tries and timeouts from the route (mosn_ext_stream_route); the
 *                   proxy's header parser is wrapped (see below); a mirror copy's
 *                   subrequest goes to the host in its ctx (ngx_http_mosn_mirror.c)
 *   get_peer        the library picks the host (mosn_ext_stream_choose_host)
 *   process_header  each attempt's response status goes to the library, which says
 *                   whether it is retried
 *   free_peer       a failed attempt's outcome goes to the library, which says whether
 *                   nginx may try again
 *   set_session,    TLS to a cluster's hosts (tls_context): no session reuse (nginx
 *   save_session    calls both for every TLS connection; they must not be NULL)
 *
 * Every retry is the library's decision (the route's MOSN retry policy), the same on
 * Envoy: the per-request proxy_next_upstream conditions only open the paths nginx retries
 * through. A response the library wants retried is turned into nginx's "invalid header"
 * failure, whatever its status, so any status can be retried, not only the few
 * proxy_next_upstream knows.
 */

#include "ngx_http_mosn.h"


/* an attempt that says nothing about the host */
#define NGX_HTTP_MOSN_OUTCOME_NONE  ((uint32_t) -1)


static ngx_int_t ngx_http_mosn_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_mosn_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_mosn_apply_route(ngx_http_request_t *r,
    const mosn_ext_route *route);
static ngx_msec_t ngx_http_mosn_msec(uint64_t ms);
static void ngx_http_mosn_wrap_process_header(ngx_http_mosn_ctx_t *ctx,
    ngx_http_upstream_t *u);
static ngx_int_t ngx_http_mosn_process_header(ngx_http_request_t *r);
static ngx_int_t ngx_http_mosn_reinit_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_mosn_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_mosn_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_mosn_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_mosn_save_session(ngx_peer_connection_t *pc, void *data);
#endif
static uint32_t ngx_http_mosn_failed_outcome(ngx_peer_connection_t *pc,
    ngx_http_upstream_t *u, uint32_t status);


static ngx_str_t  ngx_http_mosn_no_host = ngx_string("mosn_upstream");


char *
ngx_http_mosn_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upstream_server_t    *s;
    ngx_http_upstream_srv_conf_t  *uscf;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined "
                           "(\"keepalive\" must follow \"mosn_upstream\")");
    }

    uscf->peer.init_upstream = ngx_http_mosn_init_upstream;

    /*
     * Hosts come from mosn.json. The upstream{} block refuses to end without a
     * "server" ("no servers are inside upstream"): add an unused placeholder so
     * nginx.conf needs none. Nothing reads it: our init_upstream replaces the
     * round robin that would.
     */

    if (uscf->servers != NULL && uscf->servers->nelts == 0) {
        s = ngx_array_push(uscf->servers);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(s, sizeof(ngx_http_upstream_server_t));
        s->name = ngx_http_mosn_no_host;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_mosn_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    us->peer.init = ngx_http_mosn_init_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_init_peer(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_upstream_t  *u;
    ngx_http_mosn_ctx_t  *ctx;
    mosn_ext_route        route;

    u = r->upstream;
    ctx = ngx_http_mosn_get_ctx(r);

#if (NGX_HTTP_SSL)
    /* set before keepalive wraps them (it keeps these as the originals) */
    u->peer.set_session = ngx_http_mosn_set_session;
    u->peer.save_session = ngx_http_mosn_save_session;
#endif

    if (ctx != NULL && ctx->mirror) {
        /* a mirror copy: its host was chosen with the copy (ngx_http_mosn_mirror.c) */
        return ngx_http_mosn_mirror_init_peer(r, ctx);
    }

    if (ctx == NULL || ctx->stream == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn_upstream \"%V\": the request has no MOSN stream "
                      "(no \"mosn_listener\" in this location?)", &us->host);
        return NGX_ERROR;
    }

    u->peer.data = ctx;
    u->peer.get = ngx_http_mosn_get_peer;
    u->peer.free = ngx_http_mosn_free_peer;
    u->peer.tries = 1;

    ctx->attempt_pending = 0;

    ngx_memzero(&route, sizeof(mosn_ext_route));

    if (!mosn_ext_stream_route(ctx->stream, &route)) {
        return NGX_OK;                     /* peer.get answers "not routed" */
    }

    ctx->cluster.data = (u_char *) route.cluster.ptr;
    ctx->cluster.len = route.cluster.ptr ? route.cluster.len : 0;

    if (route.max_attempts > 1) {
        u->peer.tries = route.max_attempts;
    }

    return ngx_http_mosn_apply_route(r, &route);
}


/* the route's timeouts and retry conditions, on a per-request copy of the proxy conf */

static ngx_int_t
ngx_http_mosn_apply_route(ngx_http_request_t *r, const mosn_ext_route *route)
{
    ngx_http_upstream_t       *u;
    ngx_http_mosn_ctx_t       *ctx;
    ngx_http_upstream_conf_t  *conf;

    u = r->upstream;
    ctx = ngx_http_mosn_get_ctx(r);

    /* per-request copy: u->conf is the location's shared proxy config */
    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return NGX_ERROR;
    }

    *conf = *u->conf;
    u->conf = conf;

    if (route->connect_timeout_ms) {
        conf->connect_timeout = ngx_http_mosn_msec(route->connect_timeout_ms);
    }

    if (route->per_try_timeout_ms) {
        conf->send_timeout = ngx_http_mosn_msec(route->per_try_timeout_ms);
        conf->read_timeout = conf->send_timeout;

    } else if (route->timeout_ms) {
        conf->read_timeout = ngx_http_mosn_msec(route->timeout_ms);
    }

    if (route->timeout_ms) {
        conf->next_upstream_timeout = ngx_http_mosn_msec(route->timeout_ms);
    }

    /*
     * Without a retry policy nothing is retried, not even a request that failed on a
     * reused keepalive connection (Envoy does not retry it either). With one, nginx may
     * retry errors, timeouts and the responses the library marks (invalid_header), also
     * for POST (MOSN and Envoy retry any method); the library decides each time.
     */
    conf->next_upstream = (route->max_attempts > 1)
                          ? NGX_HTTP_UPSTREAM_FT_ERROR
                            |NGX_HTTP_UPSTREAM_FT_TIMEOUT
                            |NGX_HTTP_UPSTREAM_FT_INVALID_HEADER
                            |NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT
                          : NGX_HTTP_UPSTREAM_FT_OFF;

    ngx_http_mosn_wrap_process_header(ctx, u);

    return NGX_OK;
}


/*
 * The proxy sets u->process_header before the balancer's init_peer runs and resets it
 * in reinit_request before each retry; it also replaces it itself (status line, then
 * headers). Wrapping reinit_request and re-wrapping after every call keeps ours in front.
 */

static void
ngx_http_mosn_wrap_process_header(ngx_http_mosn_ctx_t *ctx,
    ngx_http_upstream_t *u)
{
    if (u->process_header != NULL
        && u->process_header != ngx_http_mosn_process_header)
    {
        ctx->process_header = u->process_header;
        u->process_header = ngx_http_mosn_process_header;
    }

    if (u->reinit_request != NULL
        && u->reinit_request != ngx_http_mosn_reinit_request)
    {
        ctx->reinit_request = u->reinit_request;
        u->reinit_request = ngx_http_mosn_reinit_request;
    }
}


static ngx_int_t
ngx_http_mosn_reinit_request(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_upstream_t  *u;
    ngx_http_mosn_ctx_t  *ctx;

    u = r->upstream;
    ctx = ngx_http_mosn_get_ctx(r);      /* u->peer.data is keepalive's, if any */

    if (ctx == NULL || ctx->reinit_request == NULL) {
        return NGX_ERROR;
    }

    rc = ctx->reinit_request(r);

    ngx_http_mosn_wrap_process_header(ctx, u);

    return rc;
}


/* the response headers of an attempt are complete: the library decides on a retry */

static ngx_int_t
ngx_http_mosn_process_header(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_uint_t            status;
    ngx_http_upstream_t  *u;
    ngx_http_mosn_ctx_t  *ctx;

    u = r->upstream;
    ctx = ngx_http_mosn_get_ctx(r);      /* u->peer.data is keepalive's, if any */

    if (ctx == NULL || ctx->process_header == NULL) {
        return NGX_ERROR;
    }

    rc = ctx->process_header(r);

    ngx_http_mosn_wrap_process_header(ctx, u);

    /* kept to give it the cluster's idle_timeout once keepalive caches it */
    ctx->peer_connection = u->peer.connection;

    if (rc != NGX_OK || !ctx->attempt_pending || ctx->stream == NULL) {
        return rc;
    }

    status = u->headers_in.status_n;

    if (ngx_http_mosn_report_outcome(ctx, MOSN_EXT_OUTCOME_RESPONSE, status, NULL)
        && u->peer.tries > 1)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mosn: retrying upstream response %ui per the route's "
                      "retry policy", status);

        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    return NGX_OK;
}


static ngx_msec_t
ngx_http_mosn_msec(uint64_t ms)
{
    return ms > NGX_HTTP_MOSN_MAX_TIMEOUT ? NGX_HTTP_MOSN_MAX_TIMEOUT
                                          : (ngx_msec_t) ms;
}


static ngx_int_t
ngx_http_mosn_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_mosn_ctx_t *ctx = data;

    int32_t                    rc;
    ngx_http_request_t        *r;
    mosn_ext_upstream          up;
    ngx_http_mosn_peer_addr_t *peer;

    r = ctx->r;

    pc->cached = 0;
    pc->connection = NULL;
    pc->name = &ngx_http_mosn_no_host;

    if (ctx->stream == NULL) {
        pc->tries = 0;
        return NGX_BUSY;
    }

    ngx_memzero(&up, sizeof(mosn_ext_upstream));

    rc = mosn_ext_stream_choose_host(ctx->stream, &up);

    if (rc != MOSN_EXT_HOST_OK) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0, "mosn: no upstream host: %s",
                      rc == MOSN_EXT_HOST_NOT_ROUTED
                          ? "the request has no cluster"
                          : rc == MOSN_EXT_HOST_NONE_HEALTHY
                                ? "no healthy host in the cluster"
                                : rc == MOSN_EXT_HOST_OVERFLOW
                                      ? "circuit breaker overflow"
                                      : "library error");
        pc->tries = 0;
        return NGX_BUSY;
    }

    /* per attempt: $upstream_addr keeps each attempt's name */
    peer = ngx_http_mosn_peer_addr(r->pool, &up);
    if (peer == NULL) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "mosn: invalid upstream address \"%*s\"",
                      up.address.len, up.address.ptr);
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "mosn upstream host \"%V\" attempt:%uD", &peer->name,
                   up.attempt);

    pc->sockaddr = &peer->sockaddr.sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;   /* $upstream_addr */
    ctx->upstream_host = peer->name;

    ctx->attempt_pending = 1;
    ctx->peer_connection = NULL;
    ctx->idle_timeout = ngx_http_mosn_msec(up.idle_timeout_ms);

    return NGX_OK;
}


/*
 * The library hands the host's address parsed (the config parsed it once): a copy of
 * its sockaddr, and its name, which lives as long as the config. NULL on a bad one.
 */
ngx_http_mosn_peer_addr_t *
ngx_http_mosn_peer_addr(ngx_pool_t *pool, const mosn_ext_upstream *up)
{
    ngx_http_mosn_peer_addr_t  *peer;

    if (up->address.len == 0 || up->sockaddr.len == 0
        || up->sockaddr.len > sizeof(peer->sockaddr)
        || up->sockaddr.len > sizeof(up->sockaddr.bytes))
    {
        return NULL;
    }

    peer = ngx_palloc(pool, sizeof(ngx_http_mosn_peer_addr_t));
    if (peer == NULL) {
        return NULL;
    }

    peer->name.data = (u_char *) up->address.ptr;
    peer->name.len = up->address.len;
    ngx_memcpy(&peer->sockaddr, up->sockaddr.bytes, up->sockaddr.len);
    peer->socklen = up->sockaddr.len;

    return peer;
}


static void
ngx_http_mosn_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_mosn_ctx_t *ctx = data;

    uint32_t              outcome, status;
    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    u = ctx->r->upstream;

    /*
     * keepalive (which wraps this balancer) has just cached the connection if it took it:
     * pc->connection is NULL then and the connection idles with keepalive_timeout. The
     * cluster's idle_timeout replaces that timer.
     */
    c = ctx->peer_connection;
    ctx->peer_connection = NULL;

    if (c != NULL && pc->connection == NULL && ctx->idle_timeout
        && c->idle && c->fd != (ngx_socket_t) -1 && c->read->timer_set)
    {
        ngx_add_timer(c->read, ctx->idle_timeout);
    }

    if (ctx->attempt_pending && ctx->stream != NULL) {

        status = (u != NULL) ? (uint32_t) u->headers_in.status_n : 0;

        if (state & (NGX_PEER_FAILED|NGX_PEER_NEXT)) {
            outcome = ngx_http_mosn_failed_outcome(pc, u, status);

        } else if (status) {
            /* finished without our header filter having reported it */
            outcome = MOSN_EXT_OUTCOME_RESPONSE;

        } else {
            /* ended by the client before any response: not the host's fault */
            outcome = NGX_HTTP_MOSN_OUTCOME_NONE;
        }

        if (outcome == NGX_HTTP_MOSN_OUTCOME_NONE) {
            ctx->attempt_pending = 0;

        } else {
            ngx_http_mosn_report_outcome(ctx, outcome, status, pc);
        }
    }

    /*
     * nginx gives a failed reused keepalive connection a free try (tries++ after this
     * returns, keyed on pc->cached): the library has counted it as an attempt and decided,
     * so that try must not be added behind its back.
     */
    pc->cached = 0;

    /* a balancer's free counts the attempt: nginx does not */
    if (pc->tries) {
        pc->tries--;
    }
}


static uint32_t
ngx_http_mosn_failed_outcome(ngx_peer_connection_t *pc, ngx_http_upstream_t *u,
    uint32_t status)
{
    if (status) {
        return MOSN_EXT_OUTCOME_RESPONSE;          /* e.g. http_502 retry */
    }

    if (pc->cached) {
        /* a reused keepalive connection that the upstream had closed: a reset, as
           Envoy reports it (retried only under retry_on) */
        return MOSN_EXT_OUTCOME_RESET;
    }

    if (u == NULL || !u->request_sent) {
        /* refused or timed out while connecting: a connect failure (502), as on
           Envoy, also when the connect timer fired */
        return MOSN_EXT_OUTCOME_CONNECT_FAILURE;
    }

    if (pc->connection != NULL
        && (pc->connection->read->timedout || pc->connection->write->timedout))
    {
        return MOSN_EXT_OUTCOME_TIMEOUT;
    }

    return MOSN_EXT_OUTCOME_RESET;
}


/* Tells the library how the attempt ended; returns whether it allows another one.
   pc == NULL (a response): nginx's tries are left alone. */

ngx_uint_t
ngx_http_mosn_report_outcome(ngx_http_mosn_ctx_t *ctx, uint32_t outcome,
    uint32_t status, ngx_peer_connection_t *pc)
{
    bool  again;

    ctx->attempt_pending = 0;

    again = mosn_ext_stream_upstream_result(ctx->stream, outcome, status);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ctx->r->connection->log, 0,
                   "mosn upstream result outcome:%uD status:%uD retry:%d",
                   outcome, status, (int) again);

    if (pc != NULL && !again) {
        pc->tries = 0;
    }

    return again;
}


#if (NGX_HTTP_SSL)

/* a new TLS session for every connection: nothing to resume */

static ngx_int_t
ngx_http_mosn_set_session(ngx_peer_connection_t *pc, void *data)
{
    return NGX_OK;
}


static void
ngx_http_mosn_save_session(ngx_peer_connection_t *pc, void *data)
{
}

#endif
