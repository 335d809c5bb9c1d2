/* tasks.c: a parallel for whose end waits for the tasks, not for every thread. */
#ifndef SEQENC_TASKS_H
#define SEQENC_TASKS_H
#include "simd.h"

#ifdef SEQENC_X86
typedef void (*seqenc_task_fn)(void *ctx, int64_t task);
/* fn(ctx, t) for t = 0 .. n - 1, on the caller and up to threads - 1 helper threads. */
void seqenc_run_tasks(seqenc_task_fn fn, void *ctx, int64_t n, int threads);
#endif
#endif
