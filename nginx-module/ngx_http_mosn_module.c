/*
 * ngx_http_mosn_module: a thin nginx (1.22) adapter for mosn-extension.
 *
 * Every MOSN decision (stream filters, routing, host choice, retry verdicts, response
 * mutations) is made by the library through include/mosn_extension.h; this file only
 * maps nginx's request life cycle onto that ABI:
 *
 *   ACCESS phase      mosn_ext_stream_new + request_headers / request_body / resume
 *                     (state machine on a request ctx: NEW -> [BODY] -> [WAIT] -> DONE)
 *   mosn_upstream     balancer: peer.init (route: tries, timeouts), peer.get
 *                     (choose_host), peer.free (upstream_result)
 *   header filter     response_headers + response mutations
 *   variables         $mosn_cluster $mosn_upstream_host $mosn_unit $mosn_flags
 *                     $mosn_attempts $mosn_details $mosn_meta_<key>
 *   eventfd           per worker: library threads wake parked requests by token
 *
 * See nginx-module/README.md.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pthread.h>
#include <sys/eventfd.h>

#include <mosn_extension.h>


#define NGX_HTTP_MOSN_BODY        1   /* reading the request body */
#define NGX_HTTP_MOSN_BODY_READY  2   /* body read: hand it to the library */
#define NGX_HTTP_MOSN_WAIT        3   /* parked until the library's wake-up */
#define NGX_HTTP_MOSN_WOKEN       4   /* woken: call mosn_ext_stream_resume */
#define NGX_HTTP_MOSN_DONE        5   /* filters done (continued or answered) */

#define NGX_HTTP_MOSN_MAX_TIMEOUT  (86400000 * 7)


typedef struct {
    mosn_ext_config            *cfg;
    ngx_str_t                   path;
    ngx_msec_t                  wait_timeout;
} ngx_http_mosn_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_str_t                   listener;
} ngx_http_mosn_loc_conf_t;


typedef struct {
    ngx_rbtree_node_t           node;      /* first: key = wake token */
    ngx_http_request_t         *r;
    mosn_ext_stream            *stream;
    ngx_uint_t                  state;

    mosn_ext_header            *headers;   /* request headers as given to the library */
    size_t                      nheaders;
    mosn_ext_bytes              body;      /* ptr == NULL: no body buffered */

    ngx_str_t                   details;   /* local reply details ($mosn_details) */
    ngx_event_t                 wait_ev;   /* watchdog while parked */

    unsigned                    parked:1;
    unsigned                    attempt_pending:1;
    unsigned                    response_seen:1;
} ngx_http_mosn_ctx_t;


static ngx_int_t ngx_http_mosn_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_mosn_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_mosn_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_mosn_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_mosn_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mosn_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_mosn_config_cmd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mosn_listener_cmd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mosn_upstream_cmd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_mosn_init_process(ngx_cycle_t *cycle);
static void ngx_http_mosn_exit_process(ngx_cycle_t *cycle);

static void ngx_http_mosn_ctx_cleanup(void *data);
static void ngx_http_mosn_body_done(ngx_http_request_t *r);
static void ngx_http_mosn_wake_fn(void *data);


static ngx_command_t  ngx_http_mosn_commands[] = {

    { ngx_string("mosn_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mosn_config_cmd,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mosn_wait_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mosn_main_conf_t, wait_timeout),
      NULL },

    { ngx_string("mosn_listener"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mosn_listener_cmd,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mosn_upstream"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS,
      ngx_http_mosn_upstream_cmd,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mosn_module_ctx = {
    ngx_http_mosn_preconfiguration,        /* preconfiguration */
    ngx_http_mosn_postconfiguration,       /* postconfiguration */

    ngx_http_mosn_create_main_conf,        /* create main configuration */
    ngx_http_mosn_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mosn_create_loc_conf,         /* create location configuration */
    ngx_http_mosn_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_mosn_module = {
    NGX_MODULE_V1,
    &ngx_http_mosn_module_ctx,             /* module context */
    ngx_http_mosn_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_mosn_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_mosn_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static ngx_str_t  ngx_http_mosn_no_host = ngx_string("mosn_upstream");
static u_char     ngx_http_mosn_empty[1];


/* ---------------------------------------------------------------------------------- */
/* Per-process state. Only the queue (and wake_fd) is touched by library threads,       */
/* always under the mutex; everything else belongs to the worker's event loop.          */

static pthread_t           ngx_http_mosn_main_thread;
static volatile ngx_uint_t ngx_http_mosn_main_thread_set;
static ngx_uint_t          ngx_http_mosn_live_configs;
/* a fresh shared zone per parsed config (see ngx_http_mosn_add_state_zone) */
static ngx_uint_t          ngx_http_mosn_state_generation;

static pthread_mutex_t     ngx_http_mosn_q_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t          *ngx_http_mosn_q;
static size_t              ngx_http_mosn_q_len;
static size_t              ngx_http_mosn_q_cap;
static size_t              ngx_http_mosn_q_lost;
static int                 ngx_http_mosn_wake_fd = -1;   /* under the lock */

static ngx_connection_t   *ngx_http_mosn_wake_conn;     /* worker only */
static ngx_rbtree_t        ngx_http_mosn_parked;
static ngx_rbtree_node_t   ngx_http_mosn_parked_sentinel;
static ngx_uint_t          ngx_http_mosn_parked_init;
static uintptr_t           ngx_http_mosn_next_token;


/* ---------------------------------------------------------------------------------- */
/* Logging from the library                                                             */

static void
ngx_http_mosn_log_cb(uint32_t level, const uint8_t *msg, size_t len, void *data)
{
    size_t      n;
    ngx_uint_t  lvl;
    u_char      buf[2048];

    if (msg == NULL) {
        return;
    }

    if (ngx_http_mosn_main_thread_set
        && pthread_equal(pthread_self(), ngx_http_mosn_main_thread)
        && ngx_cycle != NULL && ngx_cycle->log != NULL)
    {
        switch (level) {
        case 0:
        case 1:
            lvl = NGX_LOG_DEBUG;
            break;
        case 2:
            lvl = NGX_LOG_INFO;
            break;
        case 3:
            lvl = NGX_LOG_WARN;
            break;
        default:
            lvl = NGX_LOG_ERR;
        }

        ngx_log_error(lvl, ngx_cycle->log, 0, "%*s", len, msg);
        return;
    }

    /* a library thread: no nginx API here, one write(2) to stderr */

    n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
    memcpy(buf, msg, n);
    buf[n++] = '\n';

    if (write(STDERR_FILENO, buf, n) == -1) {
        /* nothing to do */
    }
}


static void
ngx_http_mosn_config_cleanup(void *data)
{
    mosn_ext_config_free(data);

    if (ngx_http_mosn_live_configs > 0 && --ngx_http_mosn_live_configs == 0) {
        /*
         * No cycle of this process uses the library any more: this module may be
         * unloaded next, so the library must forget our callback.
         */
        mosn_ext_set_log_callback(NULL, NULL);
    }
}


/* ---------------------------------------------------------------------------------- */
/* Configuration                                                                        */

static void *
ngx_http_mosn_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_mosn_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mosn_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    mmcf->wait_timeout = NGX_CONF_UNSET_MSEC;

    return mmcf;
}


static char *
ngx_http_mosn_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_mosn_main_conf_t *mmcf = conf;

    ngx_conf_init_msec_value(mmcf->wait_timeout, 60000);

    return NGX_CONF_OK;
}


static void *
ngx_http_mosn_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mosn_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mosn_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    /* lcf->listener = { 0, NULL } */
    lcf->enable = NGX_CONF_UNSET;

    return lcf;
}


static ngx_int_t
ngx_http_mosn_listener_exists(mosn_ext_config *cfg, ngx_str_t *name)
{
    size_t          i, n;
    mosn_ext_bytes  lname;

    n = mosn_ext_config_listener_count(cfg);

    for (i = 0; i < n; i++) {
        ngx_memzero(&lname, sizeof(mosn_ext_bytes));

        if (!mosn_ext_config_listener(cfg, i, &lname, NULL)) {
            continue;
        }

        if (lname.ptr != NULL && lname.len == name->len
            && ngx_memcmp(lname.ptr, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static char *
ngx_http_mosn_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_mosn_loc_conf_t *prev = parent;
    ngx_http_mosn_loc_conf_t *conf = child;

    ngx_http_mosn_main_conf_t  *mmcf;

    if (conf->enable == NGX_CONF_UNSET) {
        conf->enable = (prev->enable == NGX_CONF_UNSET) ? 0 : prev->enable;
        conf->listener = prev->listener;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mosn_module);

    if (mmcf->cfg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mosn_listener %V\" requires \"mosn_config\" "
                           "in the http block", &conf->listener);
        return NGX_CONF_ERROR;
    }

    if (!ngx_http_mosn_listener_exists(mmcf->cfg, &conf->listener)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mosn_listener \"%V\": no such listener in \"%V\"",
                           &conf->listener, &mmcf->path);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The config's upstream state (round-robin cursors, host health, per-host request and
 * failure counters) moves into this zone before the workers fork, so every worker
 * process shares it the way Envoy's worker threads share one process: round robin is
 * global, and health/ejection/breaker state added to the core later is too.
 */
static ngx_int_t
ngx_http_mosn_init_state_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    char             *err;
    size_t            size;
    void             *mem;
    mosn_ext_config  *cfg;
    ngx_slab_pool_t  *shpool;

    (void) data; /* never reused: noreuse is set, each config gets a new zone */

    cfg = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    size = mosn_ext_config_state_size(cfg);

    mem = ngx_slab_alloc(shpool, size);
    if (mem == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "mosn: shared zone \"%V\" has no room for %uz bytes",
                      &shm_zone->shm.name, size);
        return NGX_ERROR;
    }

    err = NULL;
    if (mosn_ext_config_share_state(cfg, mem, size, &err) != 0) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "mosn: cannot share upstream state: %s",
                      err ? err : "unknown error");
        mosn_ext_string_free(err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_add_state_zone(ngx_conf_t *cf, mosn_ext_config *cfg)
{
    size_t           size;
    ngx_str_t        name;
    ngx_shm_zone_t  *shm_zone;

    size = mosn_ext_config_state_size(cfg);
    if (size == 0) {
        return NGX_OK;
    }

    name.data = ngx_pnalloc(cf->pool, sizeof("mosn_state_") + NGX_INT_T_LEN);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    name.len = ngx_sprintf(name.data, "mosn_state_%ui",
                           ngx_http_mosn_state_generation++) - name.data;

    /* slab bookkeeping needs a few pages besides the block itself */
    shm_zone = ngx_shared_memory_add(cf, &name,
                                     ngx_align(size, ngx_pagesize)
                                     + 8 * ngx_pagesize,
                                     &ngx_http_mosn_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    /* a reload parses a new config with a new layout: never reuse old memory */
    shm_zone->noreuse = 1;
    shm_zone->init = ngx_http_mosn_init_state_zone;
    shm_zone->data = cfg;

    return NGX_OK;
}


static char *
ngx_http_mosn_config_cmd(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mosn_main_conf_t *mmcf = conf;

    char                *err, *cpath;
    int32_t              rc;
    uint32_t             abi;
    ngx_str_t           *value, path;
    mosn_ext_config     *cfg;
    ngx_pool_cleanup_t  *cln;

    if (mmcf->cfg != NULL) {
        return "is duplicate";
    }

    abi = mosn_ext_abi_version();

    if (abi != MOSN_EXT_ABI_VERSION) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mosn_extension.so ABI version %ui does not match "
                           "module (built for %ui)",
                           (ngx_uint_t) abi, (ngx_uint_t) MOSN_EXT_ABI_VERSION);
        return NGX_CONF_ERROR;
    }

    /* config parsing runs on the process's main thread (master, nginx -t, -s) */
    ngx_http_mosn_main_thread = pthread_self();
    ngx_http_mosn_main_thread_set = 1;
    mosn_ext_set_log_callback(ngx_http_mosn_log_cb, NULL);

    value = cf->args->elts;
    path = value[1];

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "mosn_config: empty path");
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cpath = ngx_pnalloc(cf->pool, path.len + 1);
    if (cpath == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(cpath, path.data, path.len);
    cpath[path.len] = '\0';

    cfg = NULL;
    err = NULL;

    rc = mosn_ext_config_load_file(cpath, &cfg, &err);

    if (rc != 0 || cfg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "mosn_config \"%V\": %s",
                           &path, err ? err : "cannot load (no message)");
        mosn_ext_string_free(err);

        if (rc == 0) {
            mosn_ext_config_free(cfg);
        }

        return NGX_CONF_ERROR;
    }

    mosn_ext_string_free(err);

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        mosn_ext_config_free(cfg);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_mosn_config_cleanup;
    cln->data = cfg;

    ngx_http_mosn_live_configs++;

    if (ngx_http_mosn_add_state_zone(cf, cfg) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mmcf->cfg = cfg;
    mmcf->path = path;

    return NGX_CONF_OK;
}


static char *
ngx_http_mosn_listener_cmd(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mosn_loc_conf_t *lcf = conf;

    ngx_str_t                  *value;
    ngx_http_mosn_main_conf_t  *mmcf;

    if (lcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        lcf->enable = 0;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "needs a listener name";
    }

    lcf->enable = 1;
    lcf->listener = value[1];

    /* checked here when mosn_config came first (else at merge time) */

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mosn_module);

    if (mmcf->cfg != NULL
        && !ngx_http_mosn_listener_exists(mmcf->cfg, &lcf->listener))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mosn_listener \"%V\": no such listener in \"%V\"",
                           &lcf->listener, &mmcf->path);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* ---------------------------------------------------------------------------------- */
/* Per-request context                                                                  */

static ngx_http_mosn_ctx_t *
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
ngx_http_mosn_unpark(ngx_http_mosn_ctx_t *ctx)
{
    if (ctx->parked) {
        ngx_rbtree_delete(&ngx_http_mosn_parked, &ctx->node);
        ctx->parked = 0;
    }

    if (ctx->wait_ev.timer_set) {
        ngx_del_timer(&ctx->wait_ev);
    }
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


static ngx_int_t
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


static void
ngx_http_mosn_set_bytes(mosn_ext_bytes *b, u_char *data, size_t len)
{
    b->ptr = len ? data : ngx_http_mosn_empty;
    b->len = len;
}


/* the request headers as the library sees them: pseudo-headers + headers_in */

static ngx_int_t
ngx_http_mosn_build_request(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    size_t            n;
    ngx_uint_t        i;
    ngx_str_t        *authority;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    mosn_ext_header  *hdr;

    static u_char  method_name[] = ":method";
    static u_char  path_name[] = ":path";
    static u_char  authority_name[] = ":authority";

    n = 3;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

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

    authority = NULL;

    if (r->headers_in.host != NULL) {
        authority = &r->headers_in.host->value;

    } else if (r->headers_in.server.len) {
        authority = &r->headers_in.server;
    }

    if (authority != NULL) {
        ngx_http_mosn_set_bytes(&hdr[n].name, authority_name,
                                sizeof(authority_name) - 1);
        ngx_http_mosn_set_bytes(&hdr[n].value, authority->data,
                                authority->len);
        n++;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            ngx_http_mosn_set_bytes(&hdr[n].name, h[i].key.data, h[i].key.len);
            ngx_http_mosn_set_bytes(&hdr[n].value, h[i].value.data,
                                    h[i].value.len);
            n++;
        }
    }

    ctx->headers = hdr;
    ctx->nheaders = n;

    return NGX_OK;
}


static void
ngx_http_mosn_message(ngx_http_mosn_ctx_t *ctx, mosn_ext_message *msg)
{
    ngx_memzero(msg, sizeof(mosn_ext_message));

    msg->headers = ctx->headers;
    msg->headers_len = ctx->nheaders;
    msg->body = ctx->body;             /* ptr NULL: no body buffered */
}


/* the whole request body in one piece (memory bufs copied, temp file read) */

static ngx_int_t
ngx_http_mosn_collect_body(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    off_t         total;
    size_t        size;
    ssize_t       n;
    u_char       *p, *data;
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

    total = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        total += ngx_buf_in_memory(b) ? (off_t) (b->last - b->pos)
                                      : (b->in_file ? b->file_last - b->file_pos
                                                    : 0);
    }

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

    p = data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
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
                          "mosn: cannot read the buffered request body from "
                          "\"%V\"", &b->file->name);
            return NGX_ERROR;
        }

        p += size;
    }

    ngx_http_mosn_set_bytes(&ctx->body, data, p - data);

    return NGX_OK;
}


/* ---------------------------------------------------------------------------------- */
/* Request header mutations                                                             */

static ngx_int_t
ngx_http_mosn_name_is(ngx_table_elt_t *h, const mosn_ext_bytes *name)
{
    return h->key.len == name->len
           && ngx_strncasecmp(h->key.data, (u_char *) name->ptr, name->len) == 0;
}


static ngx_table_elt_t *
ngx_http_mosn_push_header(ngx_http_request_t *r, ngx_list_t *list,
    const mosn_ext_header_mutation *m, ngx_uint_t real_hash)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(list);
    if (h == NULL) {
        return NULL;
    }

    if (ngx_http_mosn_copy(r->pool, &h->key, m->name.ptr, m->name.len)
        != NGX_OK
        || ngx_http_mosn_copy(r->pool, &h->value, m->value.ptr, m->value.len)
           != NGX_OK)
    {
        h->hash = 0;
        return NULL;
    }

    h->lowcase_key = ngx_pnalloc(r->pool, h->key.len);
    if (h->lowcase_key == NULL) {
        h->hash = 0;
        return NULL;
    }

    ngx_strlow(h->lowcase_key, h->key.data, h->key.len);

    /* the proxy matches request headers against proxy_set_header by this hash */
    h->hash = real_hash ? ngx_hash_key(h->lowcase_key, h->key.len) : 1;

    return h;
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
            if (&h[i] != keep && ngx_http_mosn_name_is(&h[i], name)) {
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


static ngx_int_t
ngx_http_mosn_apply_request_mutations(ngx_http_request_t *r,
    const mosn_ext_action *act)
{
    size_t                           k;
    ngx_uint_t                       i, count;
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *h, *first;
    const mosn_ext_header_mutation  *m;

    if (act->mutations == NULL) {
        return NGX_OK;
    }

    for (k = 0; k < act->mutations_len; k++) {
        m = &act->mutations[k];

        if (m->name.ptr == NULL || m->name.len == 0) {
            continue;
        }

        if (m->name.ptr[0] == ':') {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "mosn: request mutation of \"%*s\" is not supported "
                          "by the nginx adapter; ignored",
                          m->name.len, m->name.ptr);
            continue;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mosn request mutation op:%uD \"%*s\"",
                       m->op, m->name.len, m->name.ptr);

        switch (m->op) {

        case MOSN_EXT_HEADER_ADD:
            if (ngx_http_mosn_push_header(r, &r->headers_in.headers, m, 1)
                == NULL)
            {
                return NGX_ERROR;
            }

            break;

        case MOSN_EXT_HEADER_SET:
            count = 0;
            first = NULL;

            for (part = &r->headers_in.headers.part; part; part = part->next) {
                h = part->elts;

                for (i = 0; i < part->nelts; i++) {
                    if (ngx_http_mosn_name_is(&h[i], &m->name)) {
                        if (first == NULL) {
                            first = &h[i];
                        }

                        count++;
                    }
                }
            }

            if (first == NULL) {
                if (ngx_http_mosn_push_header(r, &r->headers_in.headers, m, 1)
                    == NULL)
                {
                    return NGX_ERROR;
                }

                break;
            }

            if (ngx_http_mosn_copy(r->pool, &first->value, m->value.ptr,
                                   m->value.len)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (count > 1
                && ngx_http_mosn_rebuild_headers_in(r, &m->name, first)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            break;

        case MOSN_EXT_HEADER_REMOVE:
            if (ngx_http_mosn_rebuild_headers_in(r, &m->name, NULL) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        default:
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "mosn: unknown header mutation op %uD ignored", m->op);
        }
    }

    return NGX_OK;
}


/* ---------------------------------------------------------------------------------- */
/* Actions                                                                              */

static ngx_int_t
ngx_http_mosn_local_reply(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx,
    const mosn_ext_action *act)
{
    size_t                        k;
    ngx_int_t                     rc;
    ngx_uint_t                    status, has_type;
    ngx_str_t                     body, value;
    ngx_buf_t                    *b;
    ngx_chain_t                   out;
    ngx_table_elt_t              *h;
    const mosn_ext_header        *rh;
    mosn_ext_header_mutation      m;

    static mosn_ext_bytes  content_type = { (const uint8_t *) "content-type", 12 };
    static mosn_ext_bytes  content_length = { (const uint8_t *) "content-length",
                                               14 };

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

    has_type = 0;

    for (k = 0; act->reply_headers != NULL && k < act->reply_headers_len; k++) {
        rh = &act->reply_headers[k];

        if (rh->name.ptr == NULL || rh->name.len == 0) {
            continue;
        }

        if (rh->name.len == content_type.len
            && ngx_strncasecmp((u_char *) rh->name.ptr,
                               (u_char *) content_type.ptr,
                               content_type.len) == 0)
        {
            if (ngx_http_mosn_copy(r->pool, &value, rh->value.ptr,
                                   rh->value.len) != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            r->headers_out.content_type = value;
            r->headers_out.content_type_len = value.len;
            r->headers_out.content_type_lowcase = NULL;
            has_type = 1;
            continue;
        }

        if (rh->name.len == content_length.len
            && ngx_strncasecmp((u_char *) rh->name.ptr,
                               (u_char *) content_length.ptr,
                               content_length.len) == 0)
        {
            continue;   /* nginx sets it from the body */
        }

        m.op = MOSN_EXT_HEADER_ADD;
        m.name = rh->name;
        m.value = rh->value;

        h = ngx_http_mosn_push_header(r, &r->headers_out.headers, &m, 0);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
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

    if (body.len) {
        b->pos = body.data;
        b->last = body.data + body.len;
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


static void
ngx_http_mosn_wait_timeout_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_mosn_ctx_t        *ctx;
    ngx_http_mosn_main_conf_t  *mmcf;

    ctx = ev->data;
    r = ctx->r;
    c = r->connection;

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mosn_module);

    ngx_http_mosn_unpark(ctx);
    ctx->state = NGX_HTTP_MOSN_DONE;

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "mosn: no wake-up from the library after %M ms "
                  "(mosn_wait_timeout); answering 504", mmcf->wait_timeout);

    ngx_http_set_log_request(c->log, r);

    r->read_event_handler = ngx_http_block_reading;
    ngx_http_finalize_request(r, NGX_HTTP_GATEWAY_TIME_OUT);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_mosn_park(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx)
{
    ngx_http_mosn_main_conf_t  *mmcf;

    if (ngx_http_mosn_wake_conn == NULL || !ngx_http_mosn_parked_init) {
        /* we gave the library no wake function, so it cannot ask this */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "mosn: library asked to wait without a wake function");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mosn_module);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mosn park token:%ui", (ngx_uint_t) ctx->node.key);

    if (!ctx->parked) {
        ngx_rbtree_insert(&ngx_http_mosn_parked, &ctx->node);
        ctx->parked = 1;
    }

    ctx->state = NGX_HTTP_MOSN_WAIT;

    ctx->wait_ev.handler = ngx_http_mosn_wait_timeout_handler;
    ctx->wait_ev.data = ctx;
    ctx->wait_ev.log = r->connection->log;

    ngx_add_timer(&ctx->wait_ev, mmcf->wait_timeout);

    /* notice a client that goes away while parked (499, cleanup frees the stream) */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

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


static ngx_int_t
ngx_http_mosn_act(ngx_http_request_t *r, ngx_http_mosn_ctx_t *ctx,
    uint32_t kind, const mosn_ext_action *act)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mosn action:%uD status:%uD", kind, act->status);

    switch (kind) {

    case MOSN_EXT_CONTINUE:
        ctx->state = NGX_HTTP_MOSN_DONE;

        if (ngx_http_mosn_apply_request_mutations(r, act) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

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


static ngx_int_t
ngx_http_mosn_start(ngx_http_request_t *r)
{
    uint32_t                    kind;
    ngx_uint_t                  eos;
    mosn_ext_action             act;
    mosn_ext_message            msg;
    ngx_pool_cleanup_t         *cln;
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

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mosn_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
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

    ctx->stream = mosn_ext_stream_new(mmcf->cfg, lcf->listener.data,
                                      lcf->listener.len,
                                      ngx_http_mosn_wake_conn
                                          ? ngx_http_mosn_wake_fn : NULL,
                                      (void *) ctx->node.key);

    if (ctx->stream == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mosn: cannot start a stream on listener \"%V\"",
                      &lcf->listener);
        ctx->state = NGX_HTTP_MOSN_DONE;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

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


static ngx_int_t
ngx_http_mosn_access_handler(ngx_http_request_t *r)
{
    uint32_t              kind;
    mosn_ext_action       act;
    mosn_ext_message      msg;
    ngx_http_mosn_ctx_t  *ctx;

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


/* ---------------------------------------------------------------------------------- */
/* Wake-ups from library threads                                                        */

/* called by a library thread: queue the token and poke the eventfd, nothing else */

static void
ngx_http_mosn_wake_fn(void *data)
{
    size_t      cap;
    uint64_t    one;
    uintptr_t  *q;

    if (pthread_mutex_lock(&ngx_http_mosn_q_lock) != 0) {
        return;
    }

    if (ngx_http_mosn_q_len == ngx_http_mosn_q_cap) {
        cap = ngx_http_mosn_q_cap ? ngx_http_mosn_q_cap * 2 : 64;
        q = realloc(ngx_http_mosn_q, cap * sizeof(uintptr_t));

        if (q == NULL) {
            ngx_http_mosn_q_lost++;
            goto poke;
        }

        ngx_http_mosn_q = q;
        ngx_http_mosn_q_cap = cap;
    }

    ngx_http_mosn_q[ngx_http_mosn_q_len++] = (uintptr_t) data;

poke:

    if (ngx_http_mosn_wake_fd != -1) {
        one = 1;

        if (write(ngx_http_mosn_wake_fd, &one, sizeof(one)) == -1) {
            /* EAGAIN: the counter is saturated, the worker wakes anyway */
        }
    }

    (void) pthread_mutex_unlock(&ngx_http_mosn_q_lock);
}


static ngx_http_mosn_ctx_t *
ngx_http_mosn_parked_find(ngx_rbtree_key_t key)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = ngx_http_mosn_parked.root;
    sentinel = ngx_http_mosn_parked.sentinel;

    while (node != sentinel) {
        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        return (ngx_http_mosn_ctx_t *) node;
    }

    return NULL;
}


static void
ngx_http_mosn_resume(ngx_http_mosn_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->r;
    c = r->connection;

    ngx_http_mosn_unpark(ctx);
    ctx->state = NGX_HTTP_MOSN_WOKEN;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0, "mosn resume token:%ui",
                   (ngx_uint_t) ctx->node.key);

    ngx_http_set_log_request(c->log, r);

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_mosn_wake_handler(ngx_event_t *ev)
{
    size_t                i, n, lost;
    uint64_t              counter;
    uintptr_t            *q;
    ngx_http_mosn_ctx_t  *ctx;

    if (ngx_http_mosn_wake_conn == NULL) {
        return;
    }

    if (read(ngx_http_mosn_wake_conn->fd, &counter, sizeof(counter)) == -1) {
        /* EAGAIN: another drain already took it */
    }

    if (pthread_mutex_lock(&ngx_http_mosn_q_lock) != 0) {
        return;
    }

    q = ngx_http_mosn_q;
    n = ngx_http_mosn_q_len;
    lost = ngx_http_mosn_q_lost;

    ngx_http_mosn_q = NULL;
    ngx_http_mosn_q_len = 0;
    ngx_http_mosn_q_cap = 0;
    ngx_http_mosn_q_lost = 0;

    (void) pthread_mutex_unlock(&ngx_http_mosn_q_lock);

    if (lost) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0,
                      "mosn: %uz wake-ups lost (out of memory); "
                      "mosn_wait_timeout ends those requests", lost);
    }

    for (i = 0; i < n; i++) {
        ctx = ngx_http_mosn_parked_find((ngx_rbtree_key_t) q[i]);

        if (ctx == NULL || ctx->state != NGX_HTTP_MOSN_WAIT) {
            continue;                      /* request already gone */
        }

        ngx_http_mosn_resume(ctx);
    }

    free(q);
}


static ngx_int_t
ngx_http_mosn_init_process(ngx_cycle_t *cycle)
{
    int                         fd;
    ngx_connection_t           *c;
    ngx_http_mosn_main_conf_t  *mmcf;

    ngx_http_mosn_main_thread = pthread_self();
    ngx_http_mosn_main_thread_set = 1;

    ngx_rbtree_init(&ngx_http_mosn_parked, &ngx_http_mosn_parked_sentinel,
                    ngx_rbtree_insert_value);
    ngx_http_mosn_parked_init = 1;

    if (ngx_process == NGX_PROCESS_HELPER) {
        return NGX_OK;
    }

    mmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_mosn_module);

    if (mmcf == NULL || mmcf->cfg == NULL) {
        return NGX_OK;
    }

    fd = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "mosn: eventfd() failed; MOSN filters that wait "
                      "will answer 500");
        return NGX_OK;
    }

    c = ngx_get_connection(fd, cycle->log);

    if (c == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "mosn: no free connection for the wake-up eventfd; "
                      "MOSN filters that wait will answer 500");
        (void) close(fd);
        return NGX_OK;
    }

    c->data = NULL;
    c->read->handler = ngx_http_mosn_wake_handler;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    /* level-triggered: the handler reads the counter every time */
    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "mosn: cannot watch the wake-up eventfd; "
                      "MOSN filters that wait will answer 500");
        ngx_close_connection(c);
        return NGX_OK;
    }

    if (pthread_mutex_lock(&ngx_http_mosn_q_lock) != 0) {
        ngx_close_connection(c);
        return NGX_OK;
    }

    ngx_http_mosn_wake_fd = fd;
    (void) pthread_mutex_unlock(&ngx_http_mosn_q_lock);

    ngx_http_mosn_wake_conn = c;

    return NGX_OK;
}


static void
ngx_http_mosn_exit_process(ngx_cycle_t *cycle)
{
    /* no library thread may write to the fd number once it is closed (and reused) */

    if (pthread_mutex_lock(&ngx_http_mosn_q_lock) == 0) {
        ngx_http_mosn_wake_fd = -1;
        (void) pthread_mutex_unlock(&ngx_http_mosn_q_lock);
    }

    if (ngx_http_mosn_wake_conn != NULL) {
        ngx_close_connection(ngx_http_mosn_wake_conn);
        ngx_http_mosn_wake_conn = NULL;
    }
}


/* ---------------------------------------------------------------------------------- */
/* Balancer (mosn_upstream)                                                             */

static void
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
}


static ngx_int_t
ngx_http_mosn_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_mosn_ctx_t *ctx = data;

    int32_t              rc;
    ngx_str_t           *name;
    ngx_addr_t           addr;
    ngx_http_request_t  *r;
    mosn_ext_upstream    up;

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
                                : "library error");
        pc->tries = 0;
        return NGX_BUSY;
    }

    name = ngx_palloc(r->pool, sizeof(ngx_str_t));
    if (name == NULL
        || ngx_http_mosn_copy(r->pool, name, up.address.ptr, up.address.len)
           != NGX_OK
        || name->len == 0)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&addr, sizeof(ngx_addr_t));

    if (ngx_parse_addr_port(r->pool, &addr, name->data, name->len) != NGX_OK
        || addr.sockaddr == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "mosn: invalid upstream address \"%V\"", name);
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "mosn upstream host \"%V\" attempt:%uD", name, up.attempt);

    pc->sockaddr = addr.sockaddr;
    pc->socklen = addr.socklen;
    pc->name = name;

    ctx->attempt_pending = 1;

    return NGX_OK;
}


static void
ngx_http_mosn_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_mosn_ctx_t *ctx = data;

    uint32_t              outcome, status;
    ngx_http_upstream_t  *u;

    u = ctx->r->upstream;

    if (ctx->attempt_pending && ctx->stream != NULL) {

        status = (u != NULL) ? (uint32_t) u->headers_in.status_n : 0;

        if (state & (NGX_PEER_FAILED|NGX_PEER_NEXT)) {

            if (status) {
                outcome = MOSN_EXT_OUTCOME_RESPONSE;     /* e.g. http_502 retry */

            } else if (u == NULL || !u->request_sent) {
                /* refused or timed out while connecting: a connect failure (502), as on
                   Envoy, also when the connect timer fired */
                outcome = MOSN_EXT_OUTCOME_CONNECT_FAILURE;

            } else if (pc->cached) {
                /* a keepalive connection the upstream had already closed: nginx retries
                   it itself (tries++), it says nothing about the host */
                ctx->attempt_pending = 0;
                outcome = (uint32_t) -1;

            } else if (pc->connection != NULL
                       && (pc->connection->read->timedout
                           || pc->connection->write->timedout))
            {
                outcome = MOSN_EXT_OUTCOME_TIMEOUT;

            } else {
                outcome = MOSN_EXT_OUTCOME_RESET;
            }

            if (outcome != (uint32_t) -1) {
                ngx_http_mosn_report_outcome(ctx, outcome, status, pc);
            }

        } else if (status) {
            /* finished without our header filter having reported it */
            ngx_http_mosn_report_outcome(ctx, MOSN_EXT_OUTCOME_RESPONSE, status,
                                         pc);

        } else {
            /* ended by the client before any response: not the host's fault */
            ctx->attempt_pending = 0;
        }
    }

    if (pc->tries) {
        pc->tries--;
    }
}


static ngx_msec_t
ngx_http_mosn_msec(uint64_t ms)
{
    return ms > NGX_HTTP_MOSN_MAX_TIMEOUT ? NGX_HTTP_MOSN_MAX_TIMEOUT
                                          : (ngx_msec_t) ms;
}


/* The proxy_next_upstream flags for the statuses a MOSN retry policy retries: the
   listed ones nginx can retry on, or every 5xx nginx knows when none are listed. */
static ngx_uint_t
ngx_http_mosn_retry_statuses(const mosn_ext_route *route)
{
    size_t      i;
    ngx_uint_t  mask;

    static const struct {
        uint16_t    status;
        ngx_uint_t  flag;
    } known[] = {
        { 500, NGX_HTTP_UPSTREAM_FT_HTTP_500 },
        { 502, NGX_HTTP_UPSTREAM_FT_HTTP_502 },
        { 503, NGX_HTTP_UPSTREAM_FT_HTTP_503 },
        { 504, NGX_HTTP_UPSTREAM_FT_HTTP_504 },
        { 403, NGX_HTTP_UPSTREAM_FT_HTTP_403 },
        { 404, NGX_HTTP_UPSTREAM_FT_HTTP_404 },
        { 429, NGX_HTTP_UPSTREAM_FT_HTTP_429 },
    };

    if (route->retry_status_codes_len == 0) {
        return NGX_HTTP_UPSTREAM_FT_HTTP_500|NGX_HTTP_UPSTREAM_FT_HTTP_502
               |NGX_HTTP_UPSTREAM_FT_HTTP_503|NGX_HTTP_UPSTREAM_FT_HTTP_504;
    }

    mask = 0;

    for (i = 0; i < route->retry_status_codes_len; i++) {
        size_t  k;

        for (k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
            if (route->retry_status_codes[i] == known[k].status) {
                mask |= known[k].flag;
            }
        }
    }

    return mask;
}


static ngx_int_t
ngx_http_mosn_init_peer(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_upstream_t       *u;
    ngx_http_mosn_ctx_t       *ctx;
    ngx_http_upstream_conf_t  *conf;
    mosn_ext_route             route;

    u = r->upstream;
    ctx = ngx_http_mosn_get_ctx(r);

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

    if (route.max_attempts > 1) {
        u->peer.tries = route.max_attempts;
    }

    if (route.connect_timeout_ms || route.per_try_timeout_ms
        || route.timeout_ms || (route.retry_on && route.max_attempts > 1))
    {
        /* per-request copy: u->conf is the location's shared proxy config */
        conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
        if (conf == NULL) {
            return NGX_ERROR;
        }

        *conf = *u->conf;
        u->conf = conf;

        if (route.connect_timeout_ms) {
            conf->connect_timeout = ngx_http_mosn_msec(route.connect_timeout_ms);
        }

        if (route.per_try_timeout_ms) {
            conf->send_timeout = ngx_http_mosn_msec(route.per_try_timeout_ms);
            conf->read_timeout = conf->send_timeout;

        } else if (route.timeout_ms) {
            conf->read_timeout = ngx_http_mosn_msec(route.timeout_ms);
        }

        if (route.timeout_ms) {
            conf->next_upstream_timeout = ngx_http_mosn_msec(route.timeout_ms);
        }

        if (route.retry_on && route.max_attempts > 1) {
            /* nginx decides *whether* it can retry, the library whether it may:
               let nginx retry the statuses the route's policy retries */
            conf->next_upstream |= ngx_http_mosn_retry_statuses(&route);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    us->peer.init = ngx_http_mosn_init_peer;

    return NGX_OK;
}


static char *
ngx_http_mosn_upstream_cmd(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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


/* ---------------------------------------------------------------------------------- */
/* Response headers                                                                     */

static ngx_int_t
ngx_http_mosn_apply_response_mutations(ngx_http_request_t *r,
    const mosn_ext_action *act)
{
    size_t                           k;
    ngx_int_t                        status;
    ngx_uint_t                       i, found;
    ngx_str_t                        value;
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *h;
    const mosn_ext_header_mutation  *m;

    static mosn_ext_bytes  content_type = { (const uint8_t *) "content-type", 12 };

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
            status = m->value.ptr ? ngx_atoi((u_char *) m->value.ptr,
                                             m->value.len)
                                  : NGX_ERROR;

            if (status < 100 || status > 999) {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "mosn: invalid :status \"%*s\" ignored",
                              m->value.len, m->value.ptr);
                continue;
            }

            r->headers_out.status = status;
            ngx_str_null(&r->headers_out.status_line);

            if (r->err_status) {
                /* nginx's own error page: $status reads err_status */
                r->err_status = status;
            }

            continue;
        }

        if (m->name.ptr[0] == ':') {
            continue;
        }

        if (m->name.len == content_type.len
            && ngx_strncasecmp((u_char *) m->name.ptr,
                               (u_char *) content_type.ptr,
                               content_type.len) == 0)
        {
            /* nginx keeps Content-Type outside the header list */

            if (m->op == MOSN_EXT_HEADER_REMOVE) {
                ngx_str_null(&r->headers_out.content_type);
                r->headers_out.content_type_len = 0;

            } else {
                if (ngx_http_mosn_copy(r->pool, &value, m->value.ptr,
                                       m->value.len) != NGX_OK)
                {
                    return NGX_ERROR;
                }

                r->headers_out.content_type = value;
                r->headers_out.content_type_len = value.len;
            }

            r->headers_out.content_type_lowcase = NULL;
            continue;
        }

        if (m->op == MOSN_EXT_HEADER_ADD) {
            if (ngx_http_mosn_push_header(r, &r->headers_out.headers, m, 0)
                == NULL)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (m->op != MOSN_EXT_HEADER_SET && m->op != MOSN_EXT_HEADER_REMOVE) {
            continue;
        }

        found = 0;

        for (part = &r->headers_out.headers.part; part; part = part->next) {
            h = part->elts;

            for (i = 0; i < part->nelts; i++) {
                if (h[i].hash == 0 || !ngx_http_mosn_name_is(&h[i], &m->name)) {
                    continue;
                }

                if (m->op == MOSN_EXT_HEADER_SET && !found) {
                    if (ngx_http_mosn_copy(r->pool, &h[i].value, m->value.ptr,
                                           m->value.len) != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    found = 1;
                    continue;
                }

                h[i].hash = 0;             /* hidden from the header filter */
            }
        }

        if (m->op == MOSN_EXT_HEADER_SET && !found) {
            if (ngx_http_mosn_push_header(r, &r->headers_out.headers, m, 0)
                == NULL)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_header_filter(ngx_http_request_t *r)
{
    size_t                n;
    uint32_t              kind, status;
    ngx_uint_t            i;
    ngx_list_part_t      *part;
    ngx_table_elt_t      *h;
    mosn_ext_header      *hdr;
    mosn_ext_action       act;
    mosn_ext_message      msg;
    ngx_http_upstream_t  *u;
    ngx_http_mosn_ctx_t  *ctx;
    u_char               *len_buf;

    static u_char  content_type_name[] = "content-type";
    static u_char  content_length_name[] = "content-length";

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

    n = 2;

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        n += part->nelts;
    }

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

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0) {
                continue;
            }

            ngx_http_mosn_set_bytes(&hdr[n].name, h[i].key.data, h[i].key.len);
            ngx_http_mosn_set_bytes(&hdr[n].value, h[i].value.data,
                                    h[i].value.len);
            n++;
        }
    }

    ngx_memzero(&msg, sizeof(mosn_ext_message));
    msg.headers = hdr;
    msg.headers_len = n;

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


/* ---------------------------------------------------------------------------------- */
/* Variables                                                                            */

#define NGX_HTTP_MOSN_VAR_CLUSTER  0
#define NGX_HTTP_MOSN_VAR_HOST     1
#define NGX_HTTP_MOSN_VAR_UNIT     2
#define NGX_HTTP_MOSN_VAR_FLAGS    3
#define NGX_HTTP_MOSN_VAR_ATTEMPTS 4


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

    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mosn_info_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    uint32_t              what;
    ngx_http_mosn_ctx_t  *ctx;
    mosn_ext_bytes        out;

    static u_char  unit[] = "unit";

    ctx = ngx_http_mosn_get_ctx(r->main);

    if (ctx == NULL || ctx->stream == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_memzero(&out, sizeof(mosn_ext_bytes));

    switch (data) {
    case NGX_HTTP_MOSN_VAR_CLUSTER:
        what = MOSN_EXT_INFO_CLUSTER;
        break;
    case NGX_HTTP_MOSN_VAR_HOST:
        what = MOSN_EXT_INFO_UPSTREAM_HOST;
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
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_mosn_set_variable(r, v, out.ptr, out.len);
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
    ngx_http_mosn_ctx_t  *ctx;

    ctx = ngx_http_mosn_get_ctx(r->main);

    if (ctx == NULL || ctx->stream == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    n = data == NGX_HTTP_MOSN_VAR_FLAGS ? mosn_ext_stream_flags(ctx->stream)
                                        : mosn_ext_stream_attempts(ctx->stream);

    if (data == NGX_HTTP_MOSN_VAR_FLAGS && n == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, sizeof("0x") - 1 + NGX_INT32_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = (data == NGX_HTTP_MOSN_VAR_FLAGS ? ngx_sprintf(p, "0x%xD", n)
                                              : ngx_sprintf(p, "%uD", n)) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
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

    v->data = ctx->details.data;
    v->len = ctx->details.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_http_variable_t  ngx_http_mosn_vars[] = {

    { ngx_string("mosn_cluster"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_CLUSTER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_upstream_host"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_HOST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_unit"), NULL, ngx_http_mosn_info_variable,
      NGX_HTTP_MOSN_VAR_UNIT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_flags"), NULL, ngx_http_mosn_number_variable,
      NGX_HTTP_MOSN_VAR_FLAGS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_attempts"), NULL, ngx_http_mosn_number_variable,
      NGX_HTTP_MOSN_VAR_ATTEMPTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_details"), NULL, ngx_http_mosn_details_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mosn_meta_"), NULL, ngx_http_mosn_meta_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_mosn_preconfiguration(ngx_conf_t *cf)
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


static ngx_int_t
ngx_http_mosn_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_mosn_access_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_mosn_header_filter;

    return NGX_OK;
}
