/*
 * The response header filter: reports the attempt that produced the response, gives
 * the library's response filters the status and headers, and applies their mutations
 * before the header goes out. It runs once per client request (main request only,
 * also for nginx's own error pages); it cannot pause, so the library's response
 * filters are synchronous.
 */

#include "ngx_http_mosn.h"


static ngx_int_t ngx_http_mosn_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_mosn_response_message(ngx_http_request_t *r,
    mosn_ext_message *msg);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_http_mosn_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_mosn_header_filter;

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

    if (ngx_http_mosn_response_message(r, &msg) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&act, sizeof(mosn_ext_action));

    kind = mosn_ext_stream_response_headers(ctx->stream,
                                            (uint32_t) r->headers_out.status,
                                            &msg, r->header_only ? 1 : 0, &act);

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
                                ngx_sprintf(len_buf, "%O",
                                            r->headers_out.content_length_n)
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
