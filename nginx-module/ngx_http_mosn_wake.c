/*
 * Parked requests and their wake-ups from library threads.
 *
 * MOSN_EXT_WAIT parks the request (NGX_DONE, watchdog timer armed) in a per-worker
 * red-black tree keyed by its wake token. The library calls the wake function from
 * its own thread: it only appends the token to a mutex-protected queue and writes a
 * per-worker eventfd. The eventfd handler, on the worker thread, looks the tokens up
 * (unknown tokens, requests already gone, are ignored) and re-runs the phases. No
 * nginx API is ever called off the worker thread.
 *
 * Not ngx_notify(): on epoll it is one eventfd whose single handler slot each call
 * overwrites, and thread pools (aio threads) already use it.
 */

#include <pthread.h>
#include <sys/eventfd.h>

#include "ngx_http_mosn.h"


static void ngx_http_mosn_wake(void *data);
static void ngx_http_mosn_wait_timeout_handler(ngx_event_t *ev);
static void ngx_http_mosn_wake_handler(ngx_event_t *ev);
static ngx_http_mosn_ctx_t *ngx_http_mosn_parked_find(ngx_rbtree_key_t key);
static void ngx_http_mosn_resume(ngx_http_mosn_ctx_t *ctx);
static ngx_connection_t *ngx_http_mosn_wake_connection(ngx_cycle_t *cycle,
    int fd);


/*
 * Per-process state. Only the queue (and wake_fd) is touched by library threads,
 * always under the mutex; everything else belongs to the worker's event loop.
 */

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


/* NULL without a wake-up eventfd: the library then never asks to wait */

ngx_http_mosn_wake_pt
ngx_http_mosn_wake_function(void)
{
    return ngx_http_mosn_wake_conn ? ngx_http_mosn_wake : NULL;
}


/* called by a library thread: queue the token and poke the eventfd, nothing else */

static void
ngx_http_mosn_wake(void *data)
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


ngx_int_t
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

    /* also keeps a gracefully quitting worker alive until the request ends */
    ctx->wait_ev.handler = ngx_http_mosn_wait_timeout_handler;
    ctx->wait_ev.data = ctx;
    ctx->wait_ev.log = r->connection->log;

    ngx_add_timer(&ctx->wait_ev, mmcf->wait_timeout);

    /* notice a client that goes away while parked (499, cleanup frees the stream) */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


void
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


/* init_process: failures are logged, not fatal (filters that wait answer 500) */

ngx_int_t
ngx_http_mosn_wake_init(ngx_cycle_t *cycle)
{
    int                         fd;
    ngx_connection_t           *c;
    ngx_http_mosn_main_conf_t  *mmcf;

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

    c = ngx_http_mosn_wake_connection(cycle, fd);
    if (c == NULL) {
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


/* the eventfd as a connection the event loop watches; closes fd on failure */

static ngx_connection_t *
ngx_http_mosn_wake_connection(ngx_cycle_t *cycle, int fd)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(fd, cycle->log);

    if (c == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "mosn: no free connection for the wake-up eventfd; "
                      "MOSN filters that wait will answer 500");
        (void) close(fd);
        return NULL;
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
        return NULL;
    }

    return c;
}


void
ngx_http_mosn_wake_exit(ngx_cycle_t *cycle)
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
