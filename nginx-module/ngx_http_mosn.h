/*
 * ngx_http_mosn_module internals: the types and the functions the module's files
 * share. Not an API: only the files of nginx-module/ include it.
 */

#ifndef _NGX_HTTP_MOSN_H_INCLUDED_
#define _NGX_HTTP_MOSN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mosn_extension.h>


/* request ctx states (the ACCESS handler is re-entered after NGX_DONE) */
#define NGX_HTTP_MOSN_BODY        1   /* reading the request body */
#define NGX_HTTP_MOSN_BODY_READY  2   /* body read: hand it to the library */
#define NGX_HTTP_MOSN_WAIT        3   /* parked until the library's wake-up */
#define NGX_HTTP_MOSN_WOKEN       4   /* woken: call mosn_ext_stream_resume */
#define NGX_HTTP_MOSN_DONE        5   /* filters done (continued or answered) */

#define NGX_HTTP_MOSN_MAX_TIMEOUT  (86400000 * 7)

/* which header list a mutation applies to (see ngx_http_mosn_headers.c) */
#define NGX_HTTP_MOSN_REQUEST_HEADERS   0   /* r->headers_in.headers */
#define NGX_HTTP_MOSN_RESPONSE_HEADERS  1   /* r->headers_out.headers */


typedef struct {
    mosn_ext_config            *cfg;
    ngx_str_t                   path;
    ngx_msec_t                  wait_timeout;
} ngx_http_mosn_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_str_t                   listener;
    ngx_str_t                   mirror_location;  /* "@name"; len 0: off; data NULL: unset */
} ngx_http_mosn_loc_conf_t;


/* a host the library chose, as nginx connects to it: one per attempt ($upstream_addr
   keeps each attempt's name; name.data points into the config) */
typedef struct {
    ngx_str_t                   name;
    union {
        struct sockaddr         sockaddr;
        struct sockaddr_in      sin;
#if (NGX_HAVE_INET6)
        struct sockaddr_in6     sin6;
#endif
    } sockaddr;
    socklen_t                   socklen;
} ngx_http_mosn_peer_addr_t;


typedef struct {
    ngx_rbtree_node_t           node;      /* first: key = wake token */
    ngx_http_request_t         *r;
    mosn_ext_stream            *stream;
    ngx_uint_t                  state;

    mosn_ext_header            *headers;   /* request headers as given to the library */
    size_t                      nheaders;
    mosn_ext_bytes              body;      /* ptr == NULL: no body buffered */

    ngx_str_t                   details;   /* local reply details ($mosn_details) */

    /* the library's answers kept for the log ($mosn_cluster, $mosn_upstream_host; both
       point into the config): the route's cluster, the latest attempt's host */
    ngx_str_t                   cluster;
    ngx_str_t                   upstream_host;

    ngx_event_t                 wait_ev;   /* watchdog while parked */

    /* the proxy's own handlers, wrapped so each response is shown to the library */
    ngx_int_t                 (*process_header)(ngx_http_request_t *r);
    ngx_int_t                 (*reinit_request)(ngx_http_request_t *r);

    /* the attempt's upstream connection and its cluster's idle_timeout (0: nginx's) */
    ngx_connection_t           *peer_connection;
    ngx_msec_t                  idle_timeout;

    /* a mirror copy (a background subrequest's ctx; no stream): the host the library
       chose for it, handed to the balancer */
    ngx_http_mosn_peer_addr_t  *mirror_peer;
    ngx_str_t                   mirror_cluster;

    /* the response body, collected while a send filter waits for all of it (the
       response header is held until then) */
    ngx_chain_t                *resp_body;
    ngx_chain_t               **resp_last;
    size_t                      resp_len;

    unsigned                    parked:1;
    unsigned                    attempt_pending:1;
    unsigned                    response_seen:1;
    unsigned                    mirror:1;
    unsigned                    resp_buffering:1;
} ngx_http_mosn_ctx_t;


/* the library's wake function: void (*)(void *ctx) in mosn_ext_stream_new() */
typedef void (*ngx_http_mosn_wake_pt)(void *data);


extern ngx_module_t  ngx_http_mosn_module;


/* ngx_http_mosn_zone.c */
ngx_int_t ngx_http_mosn_add_state_zone(ngx_conf_t *cf, mosn_ext_config *cfg);

/* ngx_http_mosn_request.c */
ngx_int_t ngx_http_mosn_access_handler(ngx_http_request_t *r);
ngx_http_mosn_ctx_t *ngx_http_mosn_get_ctx(ngx_http_request_t *r);

/* ngx_http_mosn_request.c: copies a chain's data (memory or temp file) to p; the end,
   or NULL after a read error (logged) */
u_char *ngx_http_mosn_copy_chain(ngx_http_request_t *r, ngx_chain_t *in, u_char *p);

/* ngx_http_mosn_metrics.c: the `mosn_metrics` directive (Prometheus text) */
char *ngx_http_mosn_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
/* ... and `mosn_admin` (MOSN's admin API) */
char *ngx_http_mosn_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_mosn_headers.c */
ngx_int_t ngx_http_mosn_copy(ngx_pool_t *pool, ngx_str_t *dst,
    const uint8_t *src, size_t len);
void ngx_http_mosn_set_bytes(mosn_ext_bytes *b, u_char *data, size_t len);
u_char *ngx_http_mosn_decimal(u_char *p, uint64_t n);
ngx_int_t ngx_http_mosn_name_eq(const mosn_ext_bytes *name, u_char *s,
    size_t len);
ngx_uint_t ngx_http_mosn_count_headers(ngx_http_request_t *r,
    ngx_uint_t which);
size_t ngx_http_mosn_export_headers(ngx_http_request_t *r, ngx_uint_t which,
    mosn_ext_header *hdr);
ngx_table_elt_t *ngx_http_mosn_push_header(ngx_http_request_t *r,
    ngx_uint_t which, const mosn_ext_bytes *name, const mosn_ext_bytes *value);
ngx_int_t ngx_http_mosn_set_content_type(ngx_http_request_t *r,
    const mosn_ext_bytes *value);
ngx_int_t ngx_http_mosn_apply_request_mutations(ngx_http_request_t *r,
    const mosn_ext_action *act);
ngx_int_t ngx_http_mosn_apply_response_mutations(ngx_http_request_t *r,
    const mosn_ext_action *act);

/* ngx_http_mosn_wake.c */
ngx_int_t ngx_http_mosn_wake_init(ngx_cycle_t *cycle);
void ngx_http_mosn_wake_exit(ngx_cycle_t *cycle);
ngx_http_mosn_wake_pt ngx_http_mosn_wake_function(void);
ngx_int_t ngx_http_mosn_park(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx);
void ngx_http_mosn_unpark(ngx_http_mosn_ctx_t *ctx);

/* ngx_http_mosn_balancer.c */
char *ngx_http_mosn_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_http_mosn_peer_addr_t *ngx_http_mosn_peer_addr(ngx_pool_t *pool,
    const mosn_ext_upstream *up);
ngx_uint_t ngx_http_mosn_report_outcome(ngx_http_mosn_ctx_t *ctx, uint32_t outcome,
    uint32_t status, ngx_peer_connection_t *pc);

/* ngx_http_mosn_mirror.c */
char *ngx_http_mosn_mirror_location(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_mosn_send_mirrors(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx);
ngx_int_t ngx_http_mosn_mirror_init_peer(ngx_http_request_t *r,
    ngx_http_mosn_ctx_t *ctx);

/* ngx_http_mosn_filter.c */
ngx_int_t ngx_http_mosn_filter_init(ngx_conf_t *cf);

/* ngx_http_mosn_variables.c */
ngx_int_t ngx_http_mosn_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_MOSN_H_INCLUDED_ */
