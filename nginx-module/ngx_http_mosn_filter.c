/*
 * The response filters: the header filter reports the attempt that produced the
 * response, gives the library's response filters the status and headers, and applies
 * their mutations before the header goes out. It runs once per client request (main
 * request only, also for nginx's own error pages); it cannot pause, so the library's
 * response filters are synchronous.
 *
 * When a send filter reads the body (BUFFER_BODY), the header is held: the body filter
 * copies the upstream's buffers (memory or temp file) and marks them sent, and at the
 * last buffer hands the whole body to the library, applies its header changes, sets
 * Content-Length, and sends the header and the (possibly replaced) body.
 */

#include "ngx_http_mosn.h"


static ngx_int_t ngx_http_mosn_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_mosn_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_mosn_keep_body(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx, ngx_buf_t *b);
static ngx_int_t ngx_http_mosn_send_body(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx);
static ngx_int_t ngx_http_mosn_response_message(ngx_http_request_t *r,
    mosn_ext_message *msg);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_mosn_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_mosn_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_mosn_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_header_filter(ngx_http_request_t *r)
{
    uint32_t              kind, status;
    mosn_ext_action       act;
    mosn_ext_message      msg;
    ngx_http_upstream_t  *u;
    ngx_http_mosn_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_mosn_get_ctx(r);

    if (ctx == NULL || ctx->stream == NULL || ctx->response_seen) {
        return ngx_http_next_header_filter(r);
    }

    ctx->response_seen = 1;

    /*
     * The upstream's answer ends the current attempt: report it before the response
     * filters run (else the library still sees a retried attempt's failure).
     */

    u = r->upstream;

    if (ctx->attempt_pending) {
        status = (u != NULL && u->headers_in.status_n)
                 ? (uint32_t) u->headers_in.status_n
                 : (uint32_t) r->headers_out.status;

        ngx_http_mosn_report_outcome(ctx, MOSN_EXT_OUTCOME_RESPONSE, status,
                                     NULL);
    }

    /* copied for the library only when it reads them (edits, send filters) */
    if (!mosn_ext_stream_reads_response_headers(ctx->stream)) {
        ngx_memzero(&msg, sizeof(mosn_ext_message));

    } else if (ngx_http_mosn_response_message(r, &msg) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&act, sizeof(mosn_ext_action));

    /* nginx's own answers (error pages, the library's local replies) are never held */
    kind = mosn_ext_stream_response_headers(ctx->stream,
                                            (uint32_t) r->headers_out.status,
                                            &msg,
                                            r->header_only || u == NULL
                                            || u->headers_in.status_n == 0,
                                            &act);

    if (kind == MOSN_EXT_BUFFER_BODY) {
        ctx->resp_buffering = 1;
        ctx->resp_body = NULL;
        ctx->resp_last = &ctx->resp_body;
        ctx->resp_len = 0;
        return NGX_OK;                     /* sent with the body */
    }

    if (kind == MOSN_EXT_CONTINUE) {
        if (ngx_http_mosn_apply_response_mutations(r, &act) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: response filters answered %uD (status %uD, "
                      "\"%*s\"); a local reply cannot replace a response whose "
                      "header is being sent, ignored",
                      kind, act.status, act.details.len, act.details.ptr);
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_mosn_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_uint_t            last;
    ngx_chain_t          *cl;
    ngx_http_mosn_ctx_t  *ctx;

    if (r != r->main || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_mosn_get_ctx(r);

    if (ctx == NULL || !ctx->resp_buffering) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        if (ngx_http_mosn_keep_body(r, ctx, cl->buf) != NGX_OK) {
            return NGX_ERROR;
        }

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    ctx->resp_buffering = 0;

    return ngx_http_mosn_send_body(r, ctx);
}


/* copies one buffer's data (memory or temp file) and marks it sent */

static ngx_int_t
ngx_http_mosn_keep_body(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx,
    ngx_buf_t *b)
{
    off_t         size;
    ngx_buf_t    *copy;
    ngx_chain_t  *cl, one;

    size = ngx_buf_size(b);

    if (size > 0) {
        copy = ngx_create_temp_buf(r->pool, (size_t) size);
        cl = ngx_alloc_chain_link(r->pool);
        if (copy == NULL || cl == NULL) {
            return NGX_ERROR;
        }

        one.buf = b;
        one.next = NULL;

        copy->last = ngx_http_mosn_copy_chain(r, &one, copy->pos);
        if (copy->last == NULL) {
            return NGX_ERROR;
        }

        cl->buf = copy;
        cl->next = NULL;
        *ctx->resp_last = cl;
        ctx->resp_last = &cl->next;
        ctx->resp_len += (size_t) size;
    }

    /* the upstream may reuse the buffer: it is consumed */
    if (ngx_buf_in_memory(b)) {
        b->pos = b->last;
    }

    if (b->in_file) {
        b->file_pos = b->file_last;
    }

    return NGX_OK;
}


/* the whole body is in: the library's verdict, then header and body go out */

static ngx_int_t
ngx_http_mosn_send_body(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    u_char            *p;
    uint32_t           kind;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_chain_t        out;
    mosn_ext_bytes     body, replaced;
    mosn_ext_action    act;
    mosn_ext_message   msg;

    p = ngx_pnalloc(r->pool, ctx->resp_len ? ctx->resp_len : 1);
    b = ngx_calloc_buf(r->pool);
    if (p == NULL || b == NULL) {
        return NGX_ERROR;
    }

    b->pos = p;
    b->last = ngx_http_mosn_copy_chain(r, ctx->resp_body, p);   /* memory only */
    ngx_http_mosn_set_bytes(&body, b->pos, b->last - b->pos);

    if (ngx_http_mosn_response_message(r, &msg) != NGX_OK) {
        return NGX_ERROR;
    }

    msg.body = body;
    ngx_memzero(&act, sizeof(mosn_ext_action));

    kind = mosn_ext_stream_response_body(ctx->stream, &msg, 1, &act);

    if (kind != MOSN_EXT_CONTINUE) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: response body filters answered %uD; the response "
                      "goes out unchanged", kind);

    } else {
        if (ngx_http_mosn_apply_response_mutations(r, &act) != NGX_OK) {
            return NGX_ERROR;
        }

        if (mosn_ext_stream_replaced_response_body(ctx->stream, &replaced)) {
            /* the library's copy lives as long as the stream; nginx may send later */
            p = ngx_pnalloc(r->pool, replaced.len ? replaced.len : 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            b->pos = p;
            b->last = ngx_cpymem(p, replaced.ptr, replaced.len);
        }
    }

    b->temporary = (b->last > b->pos);
    b->last_buf = 1;

    ngx_http_clear_content_length(r);
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* the response headers as the library sees them: Content-Type, Content-Length
   (kept outside the list by nginx) and the visible elements of headers_out */

static ngx_int_t
ngx_http_mosn_response_message(ngx_http_request_t *r, mosn_ext_message *msg)
{
    size_t            n;
    u_char           *len_buf;
    mosn_ext_header  *hdr;

    static u_char  content_type_name[] = "content-type";
    static u_char  content_length_name[] = "content-length";

    n = 2 + ngx_http_mosn_count_headers(r, NGX_HTTP_MOSN_RESPONSE_HEADERS);

    hdr = ngx_palloc(r->pool, n * sizeof(mosn_ext_header));
    if (hdr == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    if (r->headers_out.content_type.len) {
        ngx_http_mosn_set_bytes(&hdr[n].name, content_type_name,
                                sizeof(content_type_name) - 1);
        ngx_http_mosn_set_bytes(&hdr[n].value, r->headers_out.content_type.data,
                                r->headers_out.content_type.len);
        n++;
    }

    if (r->headers_out.content_length_n >= 0) {
        len_buf = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (len_buf == NULL) {
            return NGX_ERROR;
        }

        ngx_http_mosn_set_bytes(&hdr[n].name, content_length_name,
                                sizeof(content_length_name) - 1);
        ngx_http_mosn_set_bytes(&hdr[n].value, len_buf,
                                ngx_http_mosn_decimal(len_buf,
                                    (uint64_t) r->headers_out.content_length_n)
                                - len_buf);
        n++;
    }

    /* hidden elements (hash == 0) are not sent */
    n += ngx_http_mosn_export_headers(r, NGX_HTTP_MOSN_RESPONSE_HEADERS,
                                      &hdr[n]);

    ngx_memzero(msg, sizeof(mosn_ext_message));
    msg->headers = hdr;
    msg->headers_len = n;

    return NGX_OK;
}
