/*
 * Header lists between nginx and the library: what the library sees of a list, its
 * bytes copied into request memory, and its header mutations (SET, ADD, REMOVE)
 * applied to the request or the response.
 *
 * One implementation serves both sides; they differ only in how nginx reads a list:
 *
 *   request  (headers_in)   the proxy sends every element whatever its hash, so a
 *                           header is dropped by rebuilding the list; a pushed header
 *                           gets the real ngx_hash_key of its lowercased name.
 *   response (headers_out)  the header filter skips elements with hash == 0, so a
 *                           header is dropped by hiding it (hash = 0), and hidden
 *                           ones are neither matched nor shown to the library; a
 *                           pushed header gets hash = 1.
 *
 * SET replaces the first value and drops the others, or pushes; ADD pushes; REMOVE
 * drops. Pseudo-headers and Content-Type are handled by the side-specific callers.
 */

#include "ngx_http_mosn.h"


static ngx_int_t ngx_http_mosn_mutate_header(ngx_http_request_t *r,
    ngx_uint_t which, const mosn_ext_header_mutation *m);
static ngx_int_t ngx_http_mosn_set_header(ngx_http_request_t *r,
    ngx_uint_t which, const mosn_ext_header_mutation *m);
static ngx_table_elt_t *ngx_http_mosn_find_header(ngx_http_request_t *r,
    ngx_uint_t which, const mosn_ext_bytes *name, ngx_uint_t *count);
static ngx_int_t ngx_http_mosn_drop_headers(ngx_http_request_t *r,
    ngx_uint_t which, const mosn_ext_bytes *name, ngx_table_elt_t *keep);
static ngx_int_t ngx_http_mosn_rebuild_headers_in(ngx_http_request_t *r,
    const mosn_ext_bytes *name, ngx_table_elt_t *keep);
static ngx_list_t *ngx_http_mosn_header_list(ngx_http_request_t *r,
    ngx_uint_t which);
static ngx_int_t ngx_http_mosn_header_matches(ngx_table_elt_t *h,
    ngx_uint_t which, const mosn_ext_bytes *name);
static ngx_int_t ngx_http_mosn_header_hidden(ngx_table_elt_t *h,
    ngx_uint_t which);
static void ngx_http_mosn_set_status(ngx_http_request_t *r,
    const mosn_ext_header_mutation *m);
static ngx_int_t ngx_http_mosn_mutate_content_type(ngx_http_request_t *r,
    const mosn_ext_header_mutation *m);
static ngx_int_t ngx_http_mosn_set_upstream_path(ngx_http_request_t *r,
    const mosn_ext_bytes *value);
static ngx_int_t ngx_http_mosn_set_upstream_host(ngx_http_request_t *r,
    const mosn_ext_bytes *value);


/* empty strings point here, not at NULL: a NULL body means "no body" */
static u_char  ngx_http_mosn_empty[1];


ngx_int_t
ngx_http_mosn_copy(ngx_pool_t *pool, ngx_str_t *dst, const uint8_t *src,
    size_t len)
{
    if (len == 0 || src == NULL) {
        dst->len = 0;
        dst->data = ngx_http_mosn_empty;
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(pool, len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);
    dst->len = len;

    return NGX_OK;
}


/*
 * n in decimal at p (room for NGX_INT64_LEN); returns the end. By hand: ngx_sprintf
 * parses its format on every call, and these run on every request.
 */

u_char *
ngx_http_mosn_decimal(u_char *p, uint64_t n)
{
    u_char  *q, digits[NGX_INT64_LEN];

    q = digits + NGX_INT64_LEN;

    do {
        *--q = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    return ngx_cpymem(p, q, digits + NGX_INT64_LEN - q);
}


void
ngx_http_mosn_set_bytes(mosn_ext_bytes *b, u_char *data, size_t len)
{
    b->ptr = len ? data : ngx_http_mosn_empty;
    b->len = len;
}


/* header names are case-insensitive */

ngx_int_t
ngx_http_mosn_name_eq(const mosn_ext_bytes *name, u_char *s, size_t len)
{
    return name->len == len
           && ngx_strncasecmp((u_char *) name->ptr, s, len) == 0;
}


/* room for ngx_http_mosn_export_headers(): every element of the list */

ngx_uint_t
ngx_http_mosn_count_headers(ngx_http_request_t *r, ngx_uint_t which)
{
    ngx_uint_t        n;
    ngx_list_part_t  *part;

    n = 0;

    for (part = &ngx_http_mosn_header_list(r, which)->part;
         part;
         part = part->next)
    {
        n += part->nelts;
    }

    return n;
}


/* points hdr[] at the headers of the list the library sees; returns how many */

size_t
ngx_http_mosn_export_headers(ngx_http_request_t *r, ngx_uint_t which,
    mosn_ext_header *hdr)
{
    size_t            n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;

    for (part = &ngx_http_mosn_header_list(r, which)->part;
         part;
         part = part->next)
    {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_mosn_header_hidden(&h[i], which)) {
                continue;
            }

            ngx_http_mosn_set_bytes(&hdr[n].name, h[i].key.data, h[i].key.len);
            ngx_http_mosn_set_bytes(&hdr[n].value, h[i].value.data,
                                    h[i].value.len);
            n++;
        }
    }

    return n;
}


ngx_int_t
ngx_http_mosn_apply_request_mutations(ngx_http_request_t *r,
    const mosn_ext_action *act)
{
    size_t                           k;
    ngx_int_t                        rc;
    const mosn_ext_header_mutation  *m;

    if (act->mutations == NULL) {
        return NGX_OK;
    }

    for (k = 0; k < act->mutations_len; k++) {
        m = &act->mutations[k];

        if (m->name.ptr == NULL || m->name.len == 0) {
            continue;
        }

        if (m->op == MOSN_EXT_HEADER_SET
            && ngx_http_mosn_name_eq(&m->name, (u_char *) ":path", 5))
        {
            if (ngx_http_mosn_set_upstream_path(r, &m->value) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (m->op == MOSN_EXT_HEADER_SET
            && ngx_http_mosn_name_eq(&m->name, (u_char *) ":authority", 10))
        {
            if (ngx_http_mosn_set_upstream_host(r, &m->value) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (m->name.ptr[0] == ':') {
            /* fail closed: the request must not go upstream without a change the
               library asked for */
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "mosn: request mutation of \"%*s\" is not supported "
                          "by the nginx adapter", m->name.len, m->name.ptr);
            return NGX_ERROR;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mosn request mutation op:%uD \"%*s\"",
                       m->op, m->name.len, m->name.ptr);

        rc = ngx_http_mosn_mutate_header(r, NGX_HTTP_MOSN_REQUEST_HEADERS, m);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "mosn: unknown header mutation op %uD ignored", m->op);
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mosn_apply_response_mutations(ngx_http_request_t *r,
    const mosn_ext_action *act)
{
    size_t                           k;
    const mosn_ext_header_mutation  *m;

    if (act->mutations == NULL) {
        return NGX_OK;
    }

    for (k = 0; k < act->mutations_len; k++) {
        m = &act->mutations[k];

        if (m->name.ptr == NULL || m->name.len == 0) {
            continue;
        }

        ngx_log_debug5(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mosn response mutation op:%uD \"%*s: %*s\"", m->op,
                       m->name.len, m->name.ptr, m->value.len, m->value.ptr);

        if (m->name.len == 7 && ngx_strncmp(m->name.ptr, ":status", 7) == 0) {
            ngx_http_mosn_set_status(r, m);
            continue;
        }

        if (m->name.ptr[0] == ':') {
            continue;
        }

        if (ngx_http_mosn_name_eq(&m->name, (u_char *) "content-type",
                                  sizeof("content-type") - 1))
        {
            if (ngx_http_mosn_mutate_content_type(r, m) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        /* an unknown op (NGX_DECLINED) is ignored on this side */

        if (ngx_http_mosn_mutate_header(r, NGX_HTTP_MOSN_RESPONSE_HEADERS, m)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* NGX_DECLINED: an op this module does not know */

static ngx_int_t
ngx_http_mosn_mutate_header(ngx_http_request_t *r, ngx_uint_t which,
    const mosn_ext_header_mutation *m)
{
    switch (m->op) {

    case MOSN_EXT_HEADER_ADD:
        if (ngx_http_mosn_push_header(r, which, &m->name, &m->value) == NULL) {
            return NGX_ERROR;
        }

        return NGX_OK;

    case MOSN_EXT_HEADER_SET:
        return ngx_http_mosn_set_header(r, which, m);

    case MOSN_EXT_HEADER_REMOVE:
        return ngx_http_mosn_drop_headers(r, which, &m->name, NULL);

    default:
        return NGX_DECLINED;
    }
}


static ngx_int_t
ngx_http_mosn_set_header(ngx_http_request_t *r, ngx_uint_t which,
    const mosn_ext_header_mutation *m)
{
    ngx_uint_t        count;
    ngx_table_elt_t  *first;

    first = ngx_http_mosn_find_header(r, which, &m->name, &count);

    if (first == NULL) {
        if (ngx_http_mosn_push_header(r, which, &m->name, &m->value) == NULL) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_http_mosn_copy(r->pool, &first->value, m->value.ptr, m->value.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (count > 1) {
        return ngx_http_mosn_drop_headers(r, which, &m->name, first);
    }

    return NGX_OK;
}


ngx_table_elt_t *
ngx_http_mosn_push_header(ngx_http_request_t *r, ngx_uint_t which,
    const mosn_ext_bytes *name, const mosn_ext_bytes *value)
{
    u_char           *p;
    size_t            nlen, vlen;
    ngx_uint_t        hash;
    ngx_table_elt_t  *h;

    h = ngx_list_push(ngx_http_mosn_header_list(r, which));
    if (h == NULL) {
        return NULL;
    }

    /* key, its lower case and the value in one allocation */
    nlen = (name->ptr != NULL) ? name->len : 0;
    vlen = (value->ptr != NULL) ? value->len : 0;
    p = ngx_pnalloc(r->pool, 2 * nlen + vlen + 1);
    if (p == NULL) {
        h->hash = 0;
        return NULL;
    }

    h->key.data = p;
    h->key.len = nlen;
    if (nlen) {
        ngx_memcpy(p, name->ptr, nlen);
    }
    p += nlen;

    h->lowcase_key = p;
    hash = ngx_hash_strlow(p, h->key.data, nlen);
    p += nlen;

    h->value.data = p;
    h->value.len = vlen;
    if (vlen) {
        ngx_memcpy(p, value->ptr, vlen);
    }

    /* the proxy matches request headers against proxy_set_header by this hash */
    h->hash = (which == NGX_HTTP_MOSN_REQUEST_HEADERS) ? hash : 1;

    return h;
}


/* the first header named `name` and how many there are */

static ngx_table_elt_t *
ngx_http_mosn_find_header(ngx_http_request_t *r, ngx_uint_t which,
    const mosn_ext_bytes *name, ngx_uint_t *count)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *first;

    first = NULL;
    *count = 0;

    for (part = &ngx_http_mosn_header_list(r, which)->part;
         part;
         part = part->next)
    {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (!ngx_http_mosn_header_matches(&h[i], which, name)) {
                continue;
            }

            if (first == NULL) {
                first = &h[i];
            }

            (*count)++;
        }
    }

    return first;
}


/* drops the headers named `name`, except `keep` */

static ngx_int_t
ngx_http_mosn_drop_headers(ngx_http_request_t *r, ngx_uint_t which,
    const mosn_ext_bytes *name, ngx_table_elt_t *keep)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (which == NGX_HTTP_MOSN_REQUEST_HEADERS) {
        return ngx_http_mosn_rebuild_headers_in(r, name, keep);
    }

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (&h[i] != keep
                && ngx_http_mosn_header_matches(&h[i], which, name))
            {
                h[i].hash = 0;             /* hidden from the header filter */
            }
        }
    }

    return NGX_OK;
}


/* rebuilds headers_in without the headers named `name`, except `keep` */

static ngx_int_t
ngx_http_mosn_rebuild_headers_in(ngx_http_request_t *r,
    const mosn_ext_bytes *name, ngx_table_elt_t *keep)
{
    ngx_uint_t        i, n;
    ngx_list_t        old;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    /*
     * Build the new list in place (ngx_list_t.last points into the list itself, so
     * it must not be built elsewhere and copied); walk the old parts from a copy.
     */

    old = r->headers_in.headers;
    n = 0;

    for (part = &old.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&r->headers_in.headers, r->pool, n > 8 ? n : 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        r->headers_in.headers = old;
        return NGX_ERROR;
    }

    for (part = &old.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (&h[i] != keep
                && ngx_http_mosn_header_matches(&h[i],
                                                NGX_HTTP_MOSN_REQUEST_HEADERS,
                                                name))
            {
                continue;
            }

            nh = ngx_list_push(&r->headers_in.headers);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];
        }
    }

    /*
     * Shortcuts such as r->headers_in.user_agent still point at the old elements
     * (pool memory, valid until the request ends); the proxy sends the list.
     */

    return NGX_OK;
}


static ngx_list_t *
ngx_http_mosn_header_list(ngx_http_request_t *r, ngx_uint_t which)
{
    return (which == NGX_HTTP_MOSN_REQUEST_HEADERS) ? &r->headers_in.headers
                                                    : &r->headers_out.headers;
}


static ngx_int_t
ngx_http_mosn_header_matches(ngx_table_elt_t *h, ngx_uint_t which,
    const mosn_ext_bytes *name)
{
    return !ngx_http_mosn_header_hidden(h, which)
           && ngx_http_mosn_name_eq(name, h->key.data, h->key.len);
}


static ngx_int_t
ngx_http_mosn_header_hidden(ngx_table_elt_t *h, ngx_uint_t which)
{
    return which == NGX_HTTP_MOSN_RESPONSE_HEADERS && h->hash == 0;
}


static void
ngx_http_mosn_set_status(ngx_http_request_t *r,
    const mosn_ext_header_mutation *m)
{
    ngx_int_t  status;

    status = m->value.ptr ? ngx_atoi((u_char *) m->value.ptr, m->value.len)
                          : NGX_ERROR;

    if (status < 100 || status > 999) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "mosn: invalid :status \"%*s\" ignored",
                      m->value.len, m->value.ptr);
        return;
    }

    r->headers_out.status = status;
    ngx_str_null(&r->headers_out.status_line);

    if (r->err_status) {
        /* nginx's own error page: $status reads err_status */
        r->err_status = status;
    }
}


/* nginx keeps Content-Type outside the header list */

static ngx_int_t
ngx_http_mosn_mutate_content_type(ngx_http_request_t *r,
    const mosn_ext_header_mutation *m)
{
    if (m->op != MOSN_EXT_HEADER_REMOVE) {
        return ngx_http_mosn_set_content_type(r, &m->value);
    }

    ngx_str_null(&r->headers_out.content_type);
    r->headers_out.content_type_len = 0;
    r->headers_out.content_type_lowcase = NULL;

    return NGX_OK;
}


ngx_int_t
ngx_http_mosn_set_content_type(ngx_http_request_t *r,
    const mosn_ext_bytes *value)
{
    ngx_str_t  type;

    if (ngx_http_mosn_copy(r->pool, &type, value->ptr, value->len) != NGX_OK) {
        return NGX_ERROR;
    }

    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_type_lowcase = NULL;

    return NGX_OK;
}


/*
 * The library's ":path" is the request target the upstream gets (the path it routed on,
 * in nginx's URI escaping, plus the query). The proxy builds the upstream request line
 * from r->uri, escaped with NGX_ESCAPE_URI, and r->args once the unparsed URI is marked
 * invalid: so r->uri gets the unescaped path, which the proxy escapes back to exactly the
 * library's bytes.
 */

static ngx_int_t
ngx_http_mosn_set_upstream_path(ngx_http_request_t *r, const mosn_ext_bytes *value)
{
    u_char  *src, *dst, *start, *q;
    size_t   path_len;

    if (value->ptr == NULL || value->len == 0 || value->ptr[0] != '/') {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: invalid upstream path from the library");
        return NGX_ERROR;
    }

    q = ngx_strlchr((u_char *) value->ptr, (u_char *) value->ptr + value->len, '?');
    path_len = q ? (size_t) (q - value->ptr) : value->len;

    start = ngx_pnalloc(r->pool, path_len);
    if (start == NULL) {
        return NGX_ERROR;
    }

    src = (u_char *) value->ptr;
    dst = start;
    ngx_unescape_uri(&dst, &src, path_len, 0);

    r->uri.data = start;
    r->uri.len = dst - start;

    if (q != NULL) {
        if (ngx_http_mosn_copy(r->pool, &r->args, q + 1,
                               value->len - path_len - 1) != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        r->args.len = 0;
    }

    r->valid_unparsed_uri = 0;
    r->quoted_uri = 1;       /* makes the proxy escape r->uri */

    return NGX_OK;
}


/*
 * The library's ":authority" is the Host the upstream gets (a route's host rewrite). The
 * proxy sends "Host: $http_host" (proxy_set_header), which reads r->headers_in.host: that
 * element gets the value, or a new Host header is added and becomes it.
 */

static ngx_int_t
ngx_http_mosn_set_upstream_host(ngx_http_request_t *r, const mosn_ext_bytes *value)
{
    ngx_table_elt_t        *h;
    static mosn_ext_bytes   host = { (const uint8_t *) "Host", 4 };

    if (r->headers_in.host != NULL) {
        return ngx_http_mosn_copy(r->pool, &r->headers_in.host->value, value->ptr,
                                  value->len);
    }

    h = ngx_http_mosn_push_header(r, NGX_HTTP_MOSN_REQUEST_HEADERS, &host, value);
    if (h == NULL) {
        return NGX_ERROR;
    }

    r->headers_in.host = h;

    return NGX_OK;
}
