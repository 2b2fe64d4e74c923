/* One allocation per lifetime: a region of backend memory sized up front and
 * handed out as aligned views (parameters, gradients, Adam moments,
 * activations). Freeing is one call for the whole region. */
#ifndef SEMREP_CORE_ARENA_H
#define SEMREP_CORE_ARENA_H

#include <stddef.h>

#include "core/backend.h"

typedef struct {
    const sr_backend *be;
    char *base;
    size_t size, used;
    const char *what; /* named in errors */
} sr_arena;

/* Rounds a float count up to whole 64-byte lines, the unit of every view. */
size_t sr_arena_floats_padded(size_t count);

/* A measuring arena hands out no memory and only counts: run a layout
 * function once on it to size the real arena, then again on the real one. */
void sr_arena_measure(sr_arena *arena);
/* Allocates `bytes` of backend memory, zeroed; dies naming `what` on failure. */
void sr_arena_init(sr_arena *arena, const sr_backend *be, size_t bytes, const char *what);
/* The next `count` floats, 64-byte aligned (NULL while measuring); dies if
 * the arena is exhausted (a sizing bug, not a user error). */
float *sr_arena_floats(sr_arena *arena, size_t count);
void sr_arena_release(sr_arena *arena);

#endif
