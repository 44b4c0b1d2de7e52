/*
 * ngx_http_mosn_module: a thin nginx (1.22) adapter for mosn-extension.
 *
 * Every MOSN decision (stream filters, routing, host choice, retry verdicts, response
 * mutations) is made by the library through include/mosn_extension.h; the module only
 * maps nginx's request life cycle onto that ABI:
 *
 *   ACCESS phase      mosn_ext_stream_new + request_headers / request_body / resume
 *                     (state machine on a request ctx: NEW -> [BODY] -> [WAIT] -> DONE)
 *   mosn_upstream     balancer: peer.init (route: tries, timeouts), peer.get
 *                     (choose_host), peer.free (upstream_result)
 *   mirror copies     after CONTINUE: one background subrequest per copy
 *                     (mirror_count / mirror) to the mosn_mirror_location
 *   header filter     response_headers + response mutations
 *   variables         $mosn_cluster $mosn_upstream_host $mosn_unit $mosn_flags
 *                     $mosn_attempts $mosn_details $mosn_meta_<key>
 *   eventfd           per worker: library threads wake parked requests by token
 *
 * Files: ngx_http_mosn_module.c (this one: module tables, configuration, the library's
 * log callback, worker init/exit), ngx_http_mosn_zone.c (shared upstream state),
 * ngx_http_mosn_request.c (ACCESS phase), ngx_http_mosn_headers.c (header lists and
 * mutations), ngx_http_mosn_wake.c (parking, eventfd), ngx_http_mosn_balancer.c,
 * ngx_http_mosn_mirror.c (request mirroring), ngx_http_mosn_filter.c (header filter), ngx_http_mosn_variables.c.
 *
 * See nginx-module/README.md.
 */

#include <pthread.h>

#include "ngx_http_mosn.h"


static void *ngx_http_mosn_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_mosn_create_loc_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_mosn_preconfiguration(ngx_conf_t *cf);
static char *ngx_http_mosn_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static mosn_ext_config *ngx_http_mosn_load_config(ngx_conf_t *cf,
    ngx_str_t *path);
static void ngx_http_mosn_config_cleanup(void *data);
static void ngx_http_mosn_log_cb(uint32_t level, const uint8_t *msg,
    size_t len, void *data);
static char *ngx_http_mosn_listener(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_mosn_listener_exists(mosn_ext_config *cfg,
    ngx_str_t *name);
static char *ngx_http_mosn_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_mosn_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_mosn_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_mosn_init_process(ngx_cycle_t *cycle);
static void ngx_http_mosn_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_mosn_commands[] = {

    { ngx_string("mosn_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mosn_config,
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
      ngx_http_mosn_listener,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mosn_mirror_location"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mosn_mirror_location,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mosn_upstream"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS,
      ngx_http_mosn_upstream,
      0,
      0,
      NULL },

    { ngx_string("mosn_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mosn_metrics,
      0,
      0,
      NULL },

    { ngx_string("mosn_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mosn_admin,
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


/*
 * The log callback must know whether it runs on the process's main thread (the only
 * one allowed to call nginx); the config count tells when the library must forget it.
 */
static pthread_t           ngx_http_mosn_main_thread;
static volatile ngx_uint_t ngx_http_mosn_main_thread_set;
static ngx_uint_t          ngx_http_mosn_live_configs;


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


static void *
ngx_http_mosn_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mosn_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mosn_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    /*
     * lcf->listener = { 0, NULL }
     * lcf->mirror_location = { 0, NULL }   (unset)
     */
    lcf->enable = NGX_CONF_UNSET;

    return lcf;
}


static ngx_int_t
ngx_http_mosn_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_mosn_add_variables(cf);
}


static char *
ngx_http_mosn_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mosn_main_conf_t *mmcf = conf;

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

    cfg = ngx_http_mosn_load_config(cf, &path);
    if (cfg == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the handle lives as long as this cycle: a reload loads its own */
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


static mosn_ext_config *
ngx_http_mosn_load_config(ngx_conf_t *cf, ngx_str_t *path)
{
    char             *err, *cpath;
    int32_t           rc;
    mosn_ext_config  *cfg;

    cpath = ngx_pnalloc(cf->pool, path->len + 1);
    if (cpath == NULL) {
        return NULL;
    }

    ngx_memcpy(cpath, path->data, path->len);
    cpath[path->len] = '\0';

    cfg = NULL;
    err = NULL;

    rc = mosn_ext_config_load_file(cpath, &cfg, &err);

    if (rc != 0 || cfg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "mosn_config \"%V\": %s",
                           path, err ? err : "cannot load (no message)");
        mosn_ext_string_free(err);

        if (rc == 0) {
            mosn_ext_config_free(cfg);
        }

        return NULL;
    }

    mosn_ext_string_free(err);
    err = NULL;

    if (mosn_ext_config_check_host(cfg, (const uint8_t *) "nginx", 5, &err) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "mosn_config \"%V\": %s",
                           path, err ? err : "not for nginx (no message)");
        mosn_ext_string_free(err);
        mosn_ext_config_free(cfg);
        return NULL;
    }

    return cfg;
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


static char *
ngx_http_mosn_listener(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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
ngx_http_mosn_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_mosn_main_conf_t *mmcf = conf;

    ngx_conf_init_msec_value(mmcf->wait_timeout, 60000);

    return NGX_CONF_OK;
}


static char *
ngx_http_mosn_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_mosn_loc_conf_t *prev = parent;
    ngx_http_mosn_loc_conf_t *conf = child;

    ngx_http_mosn_main_conf_t  *mmcf;

    if (conf->mirror_location.data == NULL) {
        conf->mirror_location = prev->mirror_location;
    }

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

    return ngx_http_mosn_filter_init(cf);
}


static ngx_int_t
ngx_http_mosn_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  serving;
    ngx_http_mosn_main_conf_t  *mmcf;

    ngx_http_mosn_main_thread = pthread_self();
    ngx_http_mosn_main_thread_set = 1;

    /*
     * Active health checks run in exactly one worker (threads do not survive the
     * master's fork); the results reach every worker through the shared zone.
     */
    mmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_mosn_module);

    serving = ngx_process == NGX_PROCESS_WORKER
              || ngx_process == NGX_PROCESS_SINGLE;   /* master_process off */

    if (mmcf != NULL && mmcf->cfg != NULL && serving && ngx_worker == 0
        && mosn_ext_config_start_health_checks(mmcf->cfg))
    {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "mosn: active health checks run in worker 0");
    }

    /* STRICT_DNS names: each worker re-resolves for itself (addresses are per process) */
    if (mmcf != NULL && mmcf->cfg != NULL && serving) {
        (void) mosn_ext_config_start_dns_refresh(mmcf->cfg);
    }

    return ngx_http_mosn_wake_init(cycle);
}


static void
ngx_http_mosn_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_mosn_wake_exit(cycle);
}
