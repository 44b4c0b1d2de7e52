/*
 * Log variables ($mosn_cluster, $mosn_upstream_host, $mosn_unit, $mosn_flags,
 * $mosn_attempts, $mosn_details, $mosn_meta_<key>): read from the main request's
 * stream, so they need the ctx to outlive the log phase (a pool cleanup frees it).
 * Not found (logged as "-") when the request has no MOSN stream.
 * $mosn_live_streams: the library's other streams alive in this worker (0 once every
 * other request ended, also those whose clients went away); $mosn_duration_ms: the
 * request's time in milliseconds (Envoy's %DURATION%).
 * For the proxy location: $mosn_upstream_scheme (https when the request's cluster has a
 * tls_context, else http; http without a stream) and $mosn_upstream_sni (its server_name).
 */

#include "ngx_http_mosn.h"


#define NGX_HTTP_MOSN_VAR_CLUSTER  0
#define NGX_HTTP_MOSN_VAR_HOST     1
#define NGX_HTTP_MOSN_VAR_UNIT     2
#define NGX_HTTP_MOSN_VAR_FLAGS    3
#define NGX_HTTP_MOSN_VAR_ATTEMPTS 4
#define NGX_HTTP_MOSN_VAR_SCHEME   5
#define NGX_HTTP_MOSN_VAR_SNI      6


static ngx_int_t ngx_http_mosn_info_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mosn_meta_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mosn_number_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mosn_details_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mosn_live_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mosn_duration_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mosn_number(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uint64_t n);
static ngx_int_t ngx_http_mosn_set_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, const uint8_t *data, size_t len);
static ngx_int_t ngx_http_mosn_value(ngx_http_variable_value_t *v,
    ngx_str_t *s);


static ngx_http_variable_t  ngx_http_mosn_vars[] = {

    { ngx_string("mosn_cluster"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_CLUSTER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_upstream_host"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_HOST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_unit"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_UNIT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_upstream_scheme"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_SCHEME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_upstream_sni"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_SNI, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_flags"), NULL, ngx_http_mosn_number_variable,
      NGX_HTTP_MOSN_VAR_FLAGS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_attempts"), NULL, ngx_http_mosn_number_variable,
      NGX_HTTP_MOSN_VAR_ATTEMPTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_details"), NULL, ngx_http_mosn_details_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_live_streams"), NULL, ngx_http_mosn_live_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_duration_ms"), NULL, ngx_http_mosn_duration_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_meta_"), NULL, ngx_http_mosn_meta_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_mosn_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_mosn_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * $mosn_cluster, $mosn_upstream_host, $mosn_unit (the metadata key "unit"),
 * $mosn_upstream_scheme, $mosn_upstream_sni
 */

static ngx_int_t
ngx_http_mosn_info_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    uint32_t              what;
    ngx_str_t             s;
    ngx_http_mosn_ctx_t  *ctx;
    mosn_ext_bytes        out;

    static u_char  unit[] = "unit";
    static u_char  http[] = "http";

    ctx = ngx_http_mosn_get_ctx(r->main);

    if (ctx == NULL || ctx->stream == NULL) {
        if (data == NGX_HTTP_MOSN_VAR_SCHEME) {
            return ngx_http_mosn_set_variable(r, v, http, sizeof(http) - 1);
        }

        v->not_found = 1;
        return NGX_OK;
    }

    /* what the balancer already had from the library (no call) */
    if (data == NGX_HTTP_MOSN_VAR_CLUSTER && ctx->cluster.len) {
        return ngx_http_mosn_value(v, &ctx->cluster);
    }

    if (data == NGX_HTTP_MOSN_VAR_HOST && ctx->upstream_host.len) {
        return ngx_http_mosn_value(v, &ctx->upstream_host);
    }

    ngx_memzero(&out, sizeof(mosn_ext_bytes));

    switch (data) {
    case NGX_HTTP_MOSN_VAR_CLUSTER:
        what = MOSN_EXT_INFO_CLUSTER;
        break;
    case NGX_HTTP_MOSN_VAR_HOST:
        what = MOSN_EXT_INFO_UPSTREAM_HOST;
        break;
    case NGX_HTTP_MOSN_VAR_SCHEME:
        what = MOSN_EXT_INFO_UPSTREAM_SCHEME;
        break;
    case NGX_HTTP_MOSN_VAR_SNI:
        what = MOSN_EXT_INFO_UPSTREAM_SNI;
        break;
    default:
        what = MOSN_EXT_INFO_METADATA;
    }

    if (!mosn_ext_stream_info(ctx->stream, what,
                              what == MOSN_EXT_INFO_METADATA ? unit : NULL,
                              what == MOSN_EXT_INFO_METADATA ? sizeof(unit) - 1
                                                             : 0,
                              &out))
    {
        if (data == NGX_HTTP_MOSN_VAR_SCHEME) {
            return ngx_http_mosn_set_variable(r, v, http, sizeof(http) - 1);
        }

        v->not_found = 1;
        return NGX_OK;
    }

    if (what == MOSN_EXT_INFO_METADATA || out.len == 0) {
        /* the stream's own value: copied, it may change with the next call */
        return ngx_http_mosn_set_variable(r, v, out.ptr, out.len);
    }

    /* the rest lives as long as the config, which outlives the request */
    s.data = (u_char *) out.ptr;
    s.len = out.len;

    return ngx_http_mosn_value(v, &s);
}


/* v is s, which outlives the request (the config's, or a copy in the request pool) */

static ngx_int_t
ngx_http_mosn_value(ngx_http_variable_value_t *v, ngx_str_t *s)
{
    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* $mosn_meta_<key>: any metadata a filter recorded */

static ngx_int_t
ngx_http_mosn_meta_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t *name = (ngx_str_t *) data;

    size_t                prefix;
    ngx_http_mosn_ctx_t  *ctx;
    mosn_ext_bytes        out;

    prefix = sizeof("mosn_meta_") - 1;
    ctx = ngx_http_mosn_get_ctx(r->main);

    if (ctx == NULL || ctx->stream == NULL || name->len <= prefix) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_memzero(&out, sizeof(mosn_ext_bytes));

    if (!mosn_ext_stream_info(ctx->stream, MOSN_EXT_INFO_METADATA,
                              name->data + prefix, name->len - prefix, &out))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_mosn_set_variable(r, v, out.ptr, out.len);
}


/* $mosn_flags (hex, e.g. 0x20; not found when 0) and $mosn_attempts (decimal) */

static ngx_int_t
ngx_http_mosn_number_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char               *p;
    uint32_t              n;
    ngx_str_t             hex;
    ngx_http_mosn_ctx_t  *ctx;

    ctx = ngx_http_mosn_get_ctx(r->main);

    if (ctx == NULL || ctx->stream == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data != NGX_HTTP_MOSN_VAR_FLAGS) {
        return ngx_http_mosn_number(r, v, mosn_ext_stream_attempts(ctx->stream));
    }

    n = mosn_ext_stream_flags(ctx->stream);

    if (n == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, sizeof("0x") - 1 + NGX_INT32_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    hex.data = p;
    hex.len = ngx_sprintf(p, "0x%xD", n) - p;

    return ngx_http_mosn_value(v, &hex);
}


static ngx_int_t
ngx_http_mosn_live_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    uint64_t              n;
    ngx_http_mosn_ctx_t  *ctx;

    n = mosn_ext_live_streams();
    ctx = ngx_http_mosn_get_ctx(r->main);

    /* this request's own stream lives until its pool cleanup, after the log */
    if (ctx != NULL && ctx->stream != NULL && n > 0) {
        n--;
    }

    return ngx_http_mosn_number(r, v, n);
}


/* the request's time so far in whole milliseconds, as Envoy's %DURATION% */

static ngx_int_t
ngx_http_mosn_duration_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_msec_int_t   ms;
    ngx_time_t      *tp;

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    return ngx_http_mosn_number(r, v, (uint64_t) ngx_max(ms, 0));
}


/* a variable's value: n in decimal */

static ngx_int_t
ngx_http_mosn_number(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uint64_t n)
{
    ngx_str_t  s;

    s.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (s.data == NULL) {
        return NGX_ERROR;
    }

    s.len = ngx_http_mosn_decimal(s.data, n) - s.data;

    return ngx_http_mosn_value(v, &s);
}


static ngx_int_t
ngx_http_mosn_details_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_mosn_ctx_t  *ctx;

    ctx = ngx_http_mosn_get_ctx(r->main);

    if (ctx == NULL || ctx->details.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_mosn_value(v, &ctx->details);
}


static ngx_int_t
ngx_http_mosn_set_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    const uint8_t *data, size_t len)
{
    ngx_str_t  s;

    if (data == NULL || len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ngx_http_mosn_copy(r->pool, &s, data, len) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mosn_value(v, &s);
}
