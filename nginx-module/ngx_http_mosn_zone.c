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


/* a fresh shared zone per parsed config (see ngx_http_mosn_add_state_zone) */
static ngx_uint_t  ngx_http_mosn_state_generation;


ngx_int_t
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

    return NGX_OK;
}
