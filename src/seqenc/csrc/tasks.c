/* seqenc_run_tasks: tasks 0 .. n - 1 on the calling thread and up to threads - 1 helpers,
 * finished when every task is done, not when every thread has arrived.
 *
 * Why not an OpenMP parallel for: its region ends at a barrier that waits for every thread of
 * the team. On a shared CPU one of them is often off its core when the region starts; the
 * other threads take all the tiles and then wait for it to be scheduled again, just to arrive
 * (benchmarks/RESULTS.md: int8 and bf16 lost 2-3x of their quiet speed with one core busy).
 * Here a helper that was not scheduled in time simply finds no task left; the caller waits only
 * for tasks already taken, which are small.
 *
 * Measured (benchmarks/RESULTS.md, int8 section): no gain over OpenMP's dynamic schedule with
 * a busy core, and slower on a quiet one when OpenMP's threads spin beside these helpers, so
 * seqenc.int8 runs on it only when asked (SEQENC_INT8_SCHEDULE=fused-tasks or tasks).
 *
 * How: one job at a time (others calling meanwhile run their tasks inline). The job's tasks are
 * taken from one 64-bit atomic, generation << 32 | next task, with compare-and-swap: a helper
 * that wakes after its job ended sees another generation and takes nothing. Helpers spin briefly
 * (SPIN pauses, a few microseconds: the next GEMM usually follows at once), then sleep on a
 * condition variable, so they do not burn the core that OpenMP's threads, or another process,
 * need. After fork() the child starts without helpers (pthread_atfork).
 */
#include "tasks.h"

#ifdef SEQENC_X86
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define MAX_HELPERS 255
#define SPIN 10000

static struct {
    pthread_mutex_t submit; /* held by the job's caller */
    pthread_mutex_t lock;   /* with wake: sleeping helpers */
    pthread_cond_t wake;
    _Atomic uint64_t state; /* generation << 32 | next task */
    _Atomic int64_t done;   /* tasks of this generation finished */
    _Atomic int wanted;     /* helpers the job asks for */
    seqenc_task_fn fn;      /* the job: written before its generation is published */
    void *ctx;
    int64_t n;
    int helpers;            /* started */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static inline uint32_t generation(uint64_t state) { return (uint32_t)(state >> 32); }

/* Take and run tasks of generation gen until none is left (or another job began). */
static void take_tasks(uint32_t gen, seqenc_task_fn fn, void *ctx, int64_t n) {
    uint64_t s = atomic_load(&pool.state);
    for (;;) {
        if (generation(s) != gen || (int64_t)(s & 0xffffffffu) >= n) return;
        if (!atomic_compare_exchange_weak(&pool.state, &s, s + 1)) continue; /* s reloaded */
        fn(ctx, (int64_t)(s & 0xffffffffu));
        atomic_fetch_add(&pool.done, 1);
        s = atomic_load(&pool.state);
    }
}

static void *helper(void *arg) {
    const int index = (int)(intptr_t)arg;
    uint32_t seen = generation(atomic_load(&pool.state));
    for (;;) {
        uint64_t s = atomic_load(&pool.state);
        for (int spin = 0; generation(s) == seen && spin < SPIN; spin++) {
            _mm_pause();
            s = atomic_load(&pool.state);
        }
        if (generation(s) == seen) {
            pthread_mutex_lock(&pool.lock);
            while (generation(s = atomic_load(&pool.state)) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = generation(s);
        if (index >= atomic_load(&pool.wanted)) continue;
        /* fn, ctx and n were written before the generation was published; if another job
         * has replaced them since, take_tasks sees the new generation and takes nothing */
        take_tasks(seen, pool.fn, pool.ctx, pool.n);
    }
    return NULL;
}

static void forget_helpers(void) { /* in a forked child: none of the parent's threads exist */
    pthread_mutex_init(&pool.submit, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.helpers = 0;
}

static void start_helpers(int count) {
    static int registered;
    if (!registered) {
        pthread_atfork(NULL, NULL, forget_helpers);
        registered = 1;
    }
    if (count > MAX_HELPERS) count = MAX_HELPERS;
    while (pool.helpers < count) {
        pthread_t id;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&id, &attr, helper, (void *)(intptr_t)pool.helpers);
        pthread_attr_destroy(&attr);
        if (failed) break; /* fewer helpers: the caller does more of the work */
        pool.helpers++;
    }
}

void seqenc_run_tasks(seqenc_task_fn fn, void *ctx, int64_t n, int threads) {
    if (threads <= 1 || n <= 1 || pthread_mutex_trylock(&pool.submit) != 0) {
        for (int64_t t = 0; t < n; t++) fn(ctx, t); /* alone, or another job is running */
        return;
    }
    start_helpers(threads - 1);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    atomic_store(&pool.wanted, threads - 1);
    atomic_store(&pool.done, 0);
    const uint32_t gen = generation(atomic_load(&pool.state)) + 1;
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.state, (uint64_t)gen << 32);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    take_tasks(gen, fn, ctx, n);
    /* only tasks a helper has taken are left: wait for them, giving the core away if long */
    for (int spin = 0; atomic_load(&pool.done) < n; spin++) {
        if (spin < SPIN) _mm_pause();
        else sched_yield();
    }
    pthread_mutex_unlock(&pool.submit);
}
#endif
