/*
 * The library's own endpoints, each a location's content handler:
 *   mosn_metrics;   MOSN's metrics in Prometheus text format (summed over every worker
 *                   through the shared zone), on the prometheus sink's port and endpoint;
 *   mosn_admin;     MOSN's admin API (/api/v1/...), on admin.address.
 * `mosn-ext start` writes both servers.
 */

#include "ngx_http_mosn.h"


static ngx_int_t ngx_http_mosn_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mosn_admin_handler(ngx_http_request_t *r);
static void ngx_http_mosn_admin_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_mosn_send_text(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, char *text);


char *
ngx_http_mosn_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_mosn_metrics_handler;

    return NGX_CONF_OK;
}


char *
ngx_http_mosn_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_mosn_admin_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_mosn_metrics_handler(ngx_http_request_t *r)
{
    char                       *text;
    ngx_int_t                   rc;
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

    return ngx_http_mosn_send_text(r, NGX_HTTP_OK, &type, text);
}


static ngx_int_t
ngx_http_mosn_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_mosn_admin_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the whole (small) body is in: the library answers */

static void
ngx_http_mosn_admin_body(ngx_http_request_t *r)
{
    char                       *text;
    u_char                     *body;
    size_t                      len;
    uint32_t                    status;
    ngx_buf_t                  *b;
    ngx_http_mosn_main_conf_t  *mmcf;

    static ngx_str_t  type = ngx_string("application/json");

    body = NULL;
    len = 0;

    if (r->request_body && r->request_body->bufs) {
        b = r->request_body->bufs->buf;

        if (r->request_body->bufs->next != NULL || !ngx_buf_in_memory(b)) {
            /* larger than client_body_buffer_size: no admin request is */
            ngx_http_finalize_request(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
            return;
        }

        body = b->pos;
        len = b->last - b->pos;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mosn_module);

    text = NULL;
    status = 500;

    if (mmcf->cfg == NULL
        || mosn_ext_config_admin(mmcf->cfg, r->method_name.data,
                                 r->method_name.len, r->unparsed_uri.data,
                                 r->unparsed_uri.len, body, len, &status,
                                 &text) != 0
        || text == NULL)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_mosn_send_text(r, status, &type,
                                                          text));
}


/* sends `text` (the library's, freed here) as the whole response */

static ngx_int_t
ngx_http_mosn_send_text(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, char *text)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

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

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
