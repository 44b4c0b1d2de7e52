/*
 * The shared memory zone holding a config's upstream state.
 *
 * The config's upstream state (round-robin cursors, host health, per-host request and
 * failure counters) moves into this zone before the workers fork, so every worker
 * process shares it the way Envoy's worker threads share one process: round robin is
 * global, and health/ejection/breaker state added to the core later is too.
 */

#include "ngx_http_mosn.h"


static ngx_int_t ngx_http_mosn_init_state_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static void ngx_http_mosn_forget_previous(void *data);


/* a fresh shared zone per parsed config (see ngx_http_mosn_add_state_zone) */
static ngx_uint_t  ngx_http_mosn_state_generation;

/*
 * The config whose state zone the master initialized last: on a reload, the config still
 * serving, whose state the new one takes over. Cleared when that config is freed (a reload
 * whose cycle failed frees its config; the next one then starts afresh).
 */
static mosn_ext_config  *ngx_http_mosn_previous;


ngx_int_t
ngx_http_mosn_add_state_zone(ngx_conf_t *cf, mosn_ext_config *cfg)
{
    size_t               size;
    ngx_str_t            name;
    ngx_shm_zone_t      *shm_zone;
    ngx_pool_cleanup_t  *cln;

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

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    /* runs before the config itself is freed (cleanups run last-added first) */
    cln->handler = ngx_http_mosn_forget_previous;
    cln->data = cfg;

    return NGX_OK;
}


static void
ngx_http_mosn_forget_previous(void *data)
{
    if (ngx_http_mosn_previous == data) {
        ngx_http_mosn_previous = NULL;
    }
}


/* runs in the master (ngx_init_cycle), before the workers fork */

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

    /*
     * A reload: the old config still serves (its cycle lives until this one is up) and its
     * zone is still mapped here; the new config takes over its hosts' health and counters.
     */
    if (ngx_http_mosn_previous != NULL && ngx_http_mosn_previous != cfg) {
        (void) mosn_ext_config_inherit_state(cfg, ngx_http_mosn_previous);
    }

    ngx_http_mosn_previous = cfg;

    return NGX_OK;
}
