/* Per-thread scratch buffers, grown as needed, kept across calls and freed when their thread
 * exits.
 *
 * Kept: OpenMP's workers and encode's batch threads call the GEMMs again and again, and a fresh
 * allocation of megabytes page-faults in on every call. Freed at thread exit (a pthread key's
 * destructor), not held by __thread pointers, which leak with their thread: threads made per
 * call once kept ~0.4 MB of int8 scratch each (50 MB over 60 calls), and the float32 GEMMs'
 * __thread buffers kept 2.4 MB per short-lived thread calling MiniLM's up projection
 * (143 MiB over 60). */
#include "scratch.h"

#ifdef SEQENC_X86
#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    void *data[SCRATCH_USES];
    size_t capacity[SCRATCH_USES];
} Scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Atomic long live_scratch; /* threads holding a Scratch (seqenc_scratch_threads) */

static void free_scratch(void *p) {
    Scratch *s = p;
    for (int u = 0; u < SCRATCH_USES; u++) free(s->data[u]);
    free(s);
    live_scratch--;
}

long seqenc_scratch_threads(void) { return live_scratch; }

static void make_scratch_key(void) { pthread_key_create(&scratch_key, free_scratch); }

void *seqenc_thread_buffer(ScratchUse use, size_t bytes) {
    pthread_once(&scratch_once, make_scratch_key);
    Scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
        live_scratch++;
    }
    if (bytes > s->capacity[use]) {
        free(s->data[use]);
        s->capacity[use] = (bytes + 4095) / 4096 * 4096;
        s->data[use] = aligned_alloc(64, s->capacity[use]);
        if (!s->data[use]) s->capacity[use] = 0;
    }
    return s->data[use];
}
#endif
