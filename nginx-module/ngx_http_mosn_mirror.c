/*
 * Request mirroring (MOSN's route request_mirror_policies + the mirror stream filter).
 * The library decides how many copies a request gets and where each goes
 * (mosn_ext_stream_mirror_count / mosn_ext_stream_mirror: cluster and ip:port); the
 * module sends them:
 *
 *   when       the ACCESS handler has applied the CONTINUE mutations (the request
 *              goes upstream as it is now), before proxy_pass runs
 *   how        one background subrequest per copy (NGX_HTTP_SUBREQUEST_BACKGROUND, as
 *              ngx_http_mirror_module does): nginx's reference count keeps the main
 *              request (its pool, headers and buffered body) alive until every copy is
 *              done, also when the client goes away; the copy's response is not read
 *              (header_only) and never reaches the client
 *   where      the named location of mosn_mirror_location (e.g. @mosn_mirror), entered
 *              the way ngx_http_named_location() enters one; its proxy_pass to the
 *              mosn_upstream balancer finds the copy's host in the subrequest's ctx
 *              (no stream, no library call: ngx_http_mosn_mirror_init_peer)
 *   what       the parent's method, its headers_in (after the mutations; the subrequest
 *              shares them), its buffered body (r->request_body, kept by
 *              preserve_body) and the request target the main request goes upstream
 *              with: the subrequest gets the parent's r->uri, r->args and unparsed-URI
 *              validity, so the proxy builds the same target (the client's bytes, or
 *              the library's :path escaped back)
 *
 * Nothing here changes the main request: every failure (no location, a bad address,
 * no memory for a copy, a dead or slow mirror host) is logged and the copy dropped. A
 * copy is tried once (no retry) with its location's proxy timeouts. Note: like
 * ngx_http_mirror_module, a keep-alive client's next request on the same connection
 * starts once the copies are done; the mirror location's timeouts bound that.
 */

#include "ngx_http_mosn.h"


static ngx_http_core_loc_conf_t *ngx_http_mosn_mirror_find_location(
    ngx_http_request_t *r, ngx_str_t *name);
static ngx_int_t ngx_http_mosn_mirror_copy(ngx_http_request_t *r,
    ngx_http_core_loc_conf_t *clcf, const mosn_ext_upstream *up);
static ngx_int_t ngx_http_mosn_mirror_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_mosn_mirror_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);


/* mosn_mirror_location @name | off; */

char *
ngx_http_mosn_mirror_location(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mosn_loc_conf_t *lcf = conf;

    ngx_str_t  *value;

    if (lcf->mirror_location.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&lcf->mirror_location, "");
        return NGX_CONF_OK;
    }

    if (value[1].len < 2 || value[1].data[0] != '@') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mosn_mirror_location \"%V\": must name a named "
                           "location (\"@name\") or be \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    lcf->mirror_location = value[1];

    return NGX_CONF_OK;
}


/* after CONTINUE: one background subrequest per copy the library asked for */

void
ngx_http_mosn_send_mirrors(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    uint32_t                   i, n, sent;
    mosn_ext_upstream          up;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_mosn_loc_conf_t  *lcf;

    if (ctx->stream == NULL || r != r->main) {
        return;
    }

    n = mosn_ext_stream_mirror_count(ctx->stream);

    if (n == 0) {
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mosn_module);

    if (lcf->mirror_location.len == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "mosn: %uD mirror copies of this request not sent: "
                      "no \"mosn_mirror_location\" here", n);
        return;
    }

    /* a copy carries the body: never send one whose body nginx does not hold */
    if (r->request_body == NULL
        && (r->headers_in.content_length_n > 0 || r->headers_in.chunked))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: %uD mirror copies of this request not sent: its "
                      "body was not buffered", n);
        return;
    }

    clcf = ngx_http_mosn_mirror_find_location(r, &lcf->mirror_location);

    if (clcf == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: %uD mirror copies of this request not sent: no "
                      "location \"%V\" in this server (mosn_mirror_location)",
                      n, &lcf->mirror_location);
        return;
    }

    sent = 0;

    for (i = 0; i < n; i++) {
        ngx_memzero(&up, sizeof(mosn_ext_upstream));

        if (!mosn_ext_stream_mirror(ctx->stream, i, &up)) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "mosn: mirror copy %uD of %uD: no host from the "
                          "library", i + 1, n);
            continue;
        }

        if (ngx_http_mosn_mirror_copy(r, clcf, &up) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "mosn: mirror copy %uD of %uD to \"%*s\" not sent",
                          i + 1, n, up.address.len, up.address.ptr);
            continue;
        }

        sent++;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mosn mirror: %uD of %uD copies started", sent, n);
}


static ngx_http_core_loc_conf_t *
ngx_http_mosn_mirror_find_location(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_http_core_srv_conf_t   *cscf;
    ngx_http_core_loc_conf_t  **clcfp;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    if (cscf->named_locations == NULL) {
        return NULL;
    }

    for (clcfp = cscf->named_locations; *clcfp; clcfp++) {
        if (name->len == (*clcfp)->name.len
            && ngx_strncmp(name->data, (*clcfp)->name.data, name->len) == 0)
        {
            return *clcfp;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_mosn_mirror_copy(ngx_http_request_t *r, ngx_http_core_loc_conf_t *clcf,
    const mosn_ext_upstream *up)
{
    ngx_http_request_t         *sr;
    ngx_http_mosn_ctx_t        *sctx;
    ngx_http_core_main_conf_t  *cmcf;

    /* everything that can fail comes before the subrequest exists */

    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mosn_ctx_t));
    if (sctx == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_mosn_copy(r->pool, &sctx->mirror_cluster, up->cluster.ptr,
                           up->cluster.len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    sctx->mirror_peer = ngx_http_mosn_peer_addr(r->pool, up);
    if (sctx->mirror_peer == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: invalid mirror host address \"%*s\"",
                      up->address.len, up->address.ptr);
        return NGX_ERROR;
    }

    sctx->mirror = 1;

    /*
     * The target: r->uri and r->args (also after a :path mutation); with the parent's
     * unparsed-URI validity the proxy sends r->unparsed_uri exactly when it does for
     * the parent (ngx_http_subrequest copies unparsed_uri, headers_in, request_body).
     */

    if (ngx_http_subrequest(r, &r->uri, &r->args, &sr, NULL,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* from here on the subrequest is posted and holds a reference: no failure */

    sr->header_only = 1;               /* the answer is not read */
    sr->method = r->method;
    sr->method_name = r->method_name;
    sr->valid_unparsed_uri = r->valid_unparsed_uri;
    sr->quoted_uri = r->quoted_uri;

    sctx->r = sr;
    ngx_http_set_ctx(sr, sctx, ngx_http_mosn_module);

    /*
     * Enter the named location as ngx_http_named_location() does (and as a cloned
     * subrequest starts in its parent's location): its location conf, then its
     * phases from REWRITE on. ngx_http_handler(), which ngx_http_subrequest() set,
     * would match r->uri against the locations again.
     */

    sr->loc_conf = clcf->loc_conf;
    ngx_http_update_location_config(sr);

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    sr->phase_handler = cmcf->phase_engine.location_rewrite_index;
    sr->valid_location = 1;
    sr->write_event_handler = ngx_http_core_run_phases;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mosn mirror copy to \"%V\" (cluster \"%V\") via \"%V\"",
                   &sctx->mirror_peer->name, &sctx->mirror_cluster, &clcf->name);

    return NGX_OK;
}


/* the balancer for a copy: one try, to the host chosen with the copy */

ngx_int_t
ngx_http_mosn_mirror_init_peer(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    u->peer.data = ctx;
    u->peer.get = ngx_http_mosn_mirror_get_peer;
    u->peer.free = ngx_http_mosn_mirror_free_peer;
    u->peer.tries = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_mirror_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_mosn_ctx_t *ctx = data;

    pc->cached = 0;
    pc->connection = NULL;

    pc->sockaddr = &ctx->mirror_peer->sockaddr.sockaddr;
    pc->socklen = ctx->mirror_peer->socklen;
    pc->name = &ctx->mirror_peer->name;   /* $upstream_addr, error log lines */

    return NGX_OK;
}


static void
ngx_http_mosn_mirror_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_mosn_ctx_t *ctx = data;

    /* nginx has logged how the copy failed (connect, timeout, reset) */
    if (state & NGX_PEER_FAILED) {
        ngx_log_error(NGX_LOG_INFO, pc->log, 0,
                      "mosn: mirror copy to \"%V\" (cluster \"%V\") failed; "
                      "dropped", &ctx->mirror_peer->name, &ctx->mirror_cluster);
    }

    pc->cached = 0;                    /* no free extra try for a copy */

    if (pc->tries) {
        pc->tries--;
    }
}
