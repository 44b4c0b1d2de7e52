/*
 * MOSN's metrics in Prometheus text format: `mosn_metrics;` in a location makes it the
 * content handler that answers with the library's counters (summed over every worker
 * through the shared zone). `mosn-ext start` puts it on the prometheus sink's port and
 * endpoint.
 */

#include "ngx_http_mosn.h"


static ngx_int_t ngx_http_mosn_metrics_handler(ngx_http_request_t *r);


char *
ngx_http_mosn_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_mosn_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_mosn_metrics_handler(ngx_http_request_t *r)
{
    char                       *text;
    size_t                      len;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_chain_t                 out;
    ngx_http_mosn_main_conf_t  *mmcf;

    static ngx_str_t  type = ngx_string("text/plain; version=0.0.4");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mosn_module);

    text = NULL;

    if (mmcf->cfg == NULL || mosn_ext_config_metrics(mmcf->cfg, &text) != 0
        || text == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        mosn_ext_string_free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->pos, text, len);
    mosn_ext_string_free(text);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
