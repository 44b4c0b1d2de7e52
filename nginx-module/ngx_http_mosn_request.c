/*
 * The request side: the ACCESS phase handler runs the listener's stream filters in
 * the library and acts on their answer. It is a state machine on the request ctx
 * (NEW -> [BODY] -> [WAIT] -> DONE), re-entered by ngx_http_core_run_phases() after
 * each NGX_DONE:
 *
 *   CONTINUE      apply the request mutations, start the mirror copies
 *                 (ngx_http_mosn_mirror.c), NGX_DECLINED -> proxy_pass
 *   LOCAL_REPLY   send the library's status, headers and body
 *   WAIT          park until a library thread wakes us (ngx_http_mosn_wake.c)
 *   BUFFER_BODY   read the whole body, hand it to the library
 *
 * The ctx (and with it the library's stream) lives until the request pool goes.
 */

#include "ngx_http_mosn.h"


static ngx_int_t ngx_http_mosn_start(ngx_http_request_t *r);
static ngx_http_mosn_ctx_t *ngx_http_mosn_create_ctx(ngx_http_request_t *r);
static void ngx_http_mosn_ctx_cleanup(void *data);
static ngx_int_t ngx_http_mosn_build_request(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx);
static ngx_str_t *ngx_http_mosn_authority(ngx_http_request_t *r);
static void ngx_http_mosn_message(ngx_http_mosn_ctx_t *ctx,
    mosn_ext_message *msg);
static ngx_int_t ngx_http_mosn_act(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx, uint32_t kind, const mosn_ext_action *act);
static ngx_int_t ngx_http_mosn_local_reply(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx, const mosn_ext_action *act);
static ngx_int_t ngx_http_mosn_reply_headers(ngx_http_request_t *r,
    const mosn_ext_action *act, ngx_uint_t *has_type);
static ngx_int_t ngx_http_mosn_send_reply(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_mosn_read_body(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx);
static void ngx_http_mosn_body_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_mosn_collect_body(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx);
static ngx_int_t ngx_http_mosn_replace_body(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx);
static off_t ngx_http_mosn_body_length(ngx_chain_t *in);


/* wake tokens: never reused within a worker, so a late wake-up finds nothing */
static uintptr_t  ngx_http_mosn_next_token;


ngx_int_t
ngx_http_mosn_access_handler(ngx_http_request_t *r)
{
    uint32_t              kind;
    mosn_ext_action       act;
    mosn_ext_message      msg;
    ngx_http_mosn_ctx_t  *ctx;

    if (r != r->main) {
        /*
         * nginx's ACCESS checker never runs a subrequest's handlers; kept explicit:
         * a subrequest (a mirror copy, auth_request, SSI) has no stream of its own.
         */
        return NGX_DECLINED;
    }

    ctx = ngx_http_mosn_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_mosn_start(r);
    }

    ngx_memzero(&act, sizeof(mosn_ext_action));

    switch (ctx->state) {

    case NGX_HTTP_MOSN_BODY:
    case NGX_HTTP_MOSN_WAIT:
        return NGX_DONE;                   /* spurious run */

    case NGX_HTTP_MOSN_BODY_READY:
        if (ngx_http_mosn_collect_body(r, ctx) != NGX_OK) {
            ctx->state = NGX_HTTP_MOSN_DONE;
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_mosn_message(ctx, &msg);
        kind = mosn_ext_stream_request_body(ctx->stream, &msg, 1, &act);

        return ngx_http_mosn_act(r, ctx, kind, &act);

    case NGX_HTTP_MOSN_WOKEN:
        ngx_http_mosn_message(ctx, &msg);
        kind = mosn_ext_stream_resume(ctx->stream, &msg, &act);

        return ngx_http_mosn_act(r, ctx, kind, &act);

    default:
        return NGX_DECLINED;
    }
}


static ngx_int_t
ngx_http_mosn_start(ngx_http_request_t *r)
{
    uint32_t                    kind;
    ngx_uint_t                  eos;
    mosn_ext_action             act;
    mosn_ext_message            msg;
    ngx_http_mosn_ctx_t        *ctx;
    ngx_http_mosn_loc_conf_t   *lcf;
    ngx_http_mosn_main_conf_t  *mmcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mosn_module);

    if (lcf->enable != 1) {
        return NGX_DECLINED;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mosn_module);

    if (mmcf->cfg == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_mosn_create_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->stream = mosn_ext_stream_new(mmcf->cfg, lcf->listener.data,
                                      lcf->listener.len,
                                      ngx_http_mosn_wake_function(),
                                      (void *) ctx->node.key);

    if (ctx->stream == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: cannot start a stream on listener \"%V\"",
                      &lcf->listener);
        ctx->state = NGX_HTTP_MOSN_DONE;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the client's address, for source_ip consistent hashing */
    mosn_ext_stream_set_downstream_address(ctx->stream,
                                           r->connection->addr_text.data,
                                           r->connection->addr_text.len);

    if (ngx_http_mosn_build_request(r, ctx) != NGX_OK) {
        ctx->state = NGX_HTTP_MOSN_DONE;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_mosn_message(ctx, &msg);
    ngx_memzero(&act, sizeof(mosn_ext_action));

    eos = !(r->headers_in.content_length_n > 0 || r->headers_in.chunked);

    kind = mosn_ext_stream_request_headers(ctx->stream, &msg, eos ? 1 : 0, &act);

    return ngx_http_mosn_act(r, ctx, kind, &act);
}


static ngx_http_mosn_ctx_t *
ngx_http_mosn_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_mosn_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mosn_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    /*
     * A pool cleanup, not ngx_http_cleanup_add(): those run before the log phase,
     * and the log variables read the stream.
     */
    cln->handler = ngx_http_mosn_ctx_cleanup;
    cln->data = ctx;

    ctx->r = r;
    ctx->node.key = (ngx_rbtree_key_t) ++ngx_http_mosn_next_token;
    ngx_http_set_ctx(r, ctx, ngx_http_mosn_module);

    return ctx;
}


ngx_http_mosn_ctx_t *
ngx_http_mosn_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_mosn_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mosn_module);

    if (ctx != NULL || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    /*
     * An internal redirect (error_page, try_files, X-Accel-Redirect) zeroed r->ctx:
     * find our context again through its pool cleanup, so the filters run once per
     * client request and the variables keep their values.
     */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_mosn_ctx_cleanup) {
            continue;
        }

        ctx = cln->data;

        if (ctx != NULL && ctx->r == r) {
            ngx_http_set_ctx(r, ctx, ngx_http_mosn_module);
            return ctx;
        }
    }

    return NULL;
}


static void
ngx_http_mosn_ctx_cleanup(void *data)
{
    ngx_http_mosn_ctx_t  *ctx = data;

    ngx_http_mosn_unpark(ctx);

    if (ctx->stream != NULL) {
        /* after this returns the library never calls our wake function for it */
        mosn_ext_stream_destroy(ctx->stream);
        ctx->stream = NULL;
    }
}


/* the request headers as the library sees them: pseudo-headers + headers_in */

static ngx_int_t
ngx_http_mosn_build_request(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    size_t            n;
    ngx_str_t        *authority;
    mosn_ext_header  *hdr;

    static u_char  method_name[] = ":method";
    static u_char  path_name[] = ":path";
    static u_char  authority_name[] = ":authority";

    n = 3 + ngx_http_mosn_count_headers(r, NGX_HTTP_MOSN_REQUEST_HEADERS);

    hdr = ngx_palloc(r->pool, n * sizeof(mosn_ext_header));
    if (hdr == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    ngx_http_mosn_set_bytes(&hdr[n].name, method_name, sizeof(method_name) - 1);
    ngx_http_mosn_set_bytes(&hdr[n].value, r->method_name.data,
                            r->method_name.len);
    n++;

    ngx_http_mosn_set_bytes(&hdr[n].name, path_name, sizeof(path_name) - 1);

    if (r->unparsed_uri.len) {
        ngx_http_mosn_set_bytes(&hdr[n].value, r->unparsed_uri.data,
                                r->unparsed_uri.len);
    } else {
        ngx_http_mosn_set_bytes(&hdr[n].value, r->uri.data, r->uri.len);
    }

    n++;

    authority = ngx_http_mosn_authority(r);

    if (authority != NULL) {
        ngx_http_mosn_set_bytes(&hdr[n].name, authority_name,
                                sizeof(authority_name) - 1);
        ngx_http_mosn_set_bytes(&hdr[n].value, authority->data,
                                authority->len);
        n++;
    }

    n += ngx_http_mosn_export_headers(r, NGX_HTTP_MOSN_REQUEST_HEADERS, &hdr[n]);

    ctx->headers = hdr;
    ctx->nheaders = n;

    return NGX_OK;
}


static ngx_str_t *
ngx_http_mosn_authority(ngx_http_request_t *r)
{
    if (r->headers_in.host != NULL) {
        return &r->headers_in.host->value;
    }

    if (r->headers_in.server.len) {
        return &r->headers_in.server;
    }

    return NULL;
}


static void
ngx_http_mosn_message(ngx_http_mosn_ctx_t *ctx, mosn_ext_message *msg)
{
    ngx_memzero(msg, sizeof(mosn_ext_message));

    msg->headers = ctx->headers;
    msg->headers_len = ctx->nheaders;
    msg->body = ctx->body;             /* ptr NULL: no body buffered */
}


static ngx_int_t
ngx_http_mosn_act(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx,
    uint32_t kind, const mosn_ext_action *act)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mosn action:%uD status:%uD", kind, act->status);

    switch (kind) {

    case MOSN_EXT_CONTINUE:
        ctx->state = NGX_HTTP_MOSN_DONE;

        if (ngx_http_mosn_apply_request_mutations(r, act) != NGX_OK
            || ngx_http_mosn_replace_body(r, ctx) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* the request goes upstream as it is now: so do its copies (errors logged) */
        ngx_http_mosn_send_mirrors(r, ctx);

        return NGX_DECLINED;

    case MOSN_EXT_LOCAL_REPLY:
        return ngx_http_mosn_local_reply(r, ctx, act);

    case MOSN_EXT_WAIT:
        return ngx_http_mosn_park(r, ctx);

    case MOSN_EXT_BUFFER_BODY:
        return ngx_http_mosn_read_body(r, ctx);

    default:
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "mosn: unknown action %uD from the library", kind);
        ctx->state = NGX_HTTP_MOSN_DONE;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static ngx_int_t
ngx_http_mosn_local_reply(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx,
    const mosn_ext_action *act)
{
    ngx_uint_t  status, has_type;
    ngx_str_t   body;

    ctx->state = NGX_HTTP_MOSN_DONE;

    status = act->status;

    if (status < 100 || status > 999) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * Copy everything the library owns first: sending the header runs our header
     * filter, whose library call invalidates `act`.
     */

    if (ngx_http_mosn_copy(r->pool, &ctx->details, act->details.ptr,
                           act->details.len) != NGX_OK
        || ngx_http_mosn_copy(r->pool, &body, act->reply_body.ptr,
                              act->reply_body.len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_mosn_reply_headers(r, act, &has_type) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mosn local reply %ui \"%V\"", status, &ctx->details);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = body.len;

    if (!has_type) {
        ngx_str_set(&r->headers_out.content_type, "text/plain");
        r->headers_out.content_type_len = sizeof("text/plain") - 1;
        r->headers_out.content_type_lowcase = NULL;
    }

    return ngx_http_mosn_send_reply(r, &body);
}


static ngx_int_t
ngx_http_mosn_reply_headers(ngx_http_request_t *r, const mosn_ext_action *act,
    ngx_uint_t *has_type)
{
    size_t                  k;
    const mosn_ext_header  *rh;

    *has_type = 0;

    for (k = 0; act->reply_headers != NULL && k < act->reply_headers_len; k++) {
        rh = &act->reply_headers[k];

        if (rh->name.ptr == NULL || rh->name.len == 0) {
            continue;
        }

        if (ngx_http_mosn_name_eq(&rh->name, (u_char *) "content-type",
                                  sizeof("content-type") - 1))
        {
            if (ngx_http_mosn_set_content_type(r, &rh->value) != NGX_OK) {
                return NGX_ERROR;
            }

            *has_type = 1;
            continue;
        }

        if (ngx_http_mosn_name_eq(&rh->name, (u_char *) "content-length",
                                  sizeof("content-length") - 1))
        {
            continue;   /* nginx sets it from the body */
        }

        if (ngx_http_mosn_push_header(r, NGX_HTTP_MOSN_RESPONSE_HEADERS,
                                      &rh->name, &rh->value)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_send_reply(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return NGX_DONE;
    }

    if (body->len) {
        b->pos = body->data;
        b->last = body->data + body->len;
        b->memory = 1;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);

    ngx_http_finalize_request(r, rc);
    return NGX_DONE;
}


static ngx_int_t
ngx_http_mosn_read_body(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx->body.ptr != NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "mosn: library asked for the body twice");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->state = NGX_HTTP_MOSN_BODY;
    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_mosn_body_done);

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* drops the reference ngx_http_read_client_request_body() took */
    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_mosn_body_done(ngx_http_request_t *r)
{
    ngx_http_mosn_ctx_t  *ctx;

    ctx = ngx_http_mosn_get_ctx(r);

    if (ctx == NULL || ctx->state != NGX_HTTP_MOSN_BODY) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->preserve_body = 1;                  /* the proxy sends it again */
    ctx->state = NGX_HTTP_MOSN_BODY_READY;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * a filter replaced the buffered body: the proxy sends the new one, with its length as
 * Content-Length (the proxy takes it from content_length_n once the body is read, also
 * for a chunked request)
 */

static ngx_int_t
ngx_http_mosn_replace_body(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    u_char          *p;
    ngx_buf_t       *b;
    ngx_chain_t     *cl;
    mosn_ext_bytes   body;

    if (ctx->body.ptr == NULL
        || !mosn_ext_stream_replaced_body(ctx->stream, &body))
    {
        return NGX_OK;
    }

    if (r->request_body == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "mosn: a replaced body but no request body");
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    if (body.len) {
        /* the library's copy lives as long as the stream; the proxy may send later */
        p = ngx_pnalloc(r->pool, body.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, body.ptr, body.len);
        b->pos = p;
        b->last = p + body.len;
        b->temporary = 1;
    }

    b->last_buf = 1;
    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->headers_in.content_length_n = body.len;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mosn: request body replaced, %uz bytes", body.len);

    return NGX_OK;
}


/* the whole request body in one piece (memory bufs copied, temp file read) */

static ngx_int_t
ngx_http_mosn_collect_body(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    off_t         total;
    u_char       *data, *last;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_http_mosn_set_bytes(&ctx->body, NULL, 0);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && ngx_buf_in_memory(cl->buf)) {
        b = cl->buf;
        ngx_http_mosn_set_bytes(&ctx->body, b->pos, b->last - b->pos);
        return NGX_OK;
    }

    total = ngx_http_mosn_body_length(cl);

    if (total == 0) {
        return NGX_OK;
    }

    if ((uint64_t) total > (uint64_t) NGX_MAX_SIZE_T_VALUE / 2) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: request body of %O bytes is too large to inspect",
                      total);
        return NGX_ERROR;
    }

    data = ngx_pnalloc(r->pool, (size_t) total);
    if (data == NULL) {
        return NGX_ERROR;
    }

    last = ngx_http_mosn_copy_chain(r, cl, data);
    if (last == NULL) {
        return NGX_ERROR;
    }

    ngx_http_mosn_set_bytes(&ctx->body, data, last - data);

    return NGX_OK;
}


static off_t
ngx_http_mosn_body_length(ngx_chain_t *in)
{
    off_t         total;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    total = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;
        total += ngx_buf_in_memory(b) ? (off_t) (b->last - b->pos)
                                      : (b->in_file ? b->file_last - b->file_pos
                                                    : 0);
    }

    return total;
}


/* copies the bufs to p, reading those in the temp file; returns the end or NULL */

u_char *
ngx_http_mosn_copy_chain(ngx_http_request_t *r, ngx_chain_t *in, u_char *p)
{
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        if (!b->in_file || b->file == NULL) {
            continue;
        }

        size = (size_t) (b->file_last - b->file_pos);

        n = ngx_read_file(b->file, p, size, b->file_pos);

        if (n == NGX_ERROR || (size_t) n != size) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "mosn: cannot read the buffered body from "
                          "\"%V\"", &b->file->name);
            return NULL;
        }

        p += size;
    }

    return p;
}
