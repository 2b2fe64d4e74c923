#include "core/arena.h"

#include <stdint.h>

#include "core/check.h"

size_t sr_arena_floats_padded(size_t count) { return (count + 15) / 16 * 16; }

void sr_arena_measure(sr_arena *arena)
{
    *arena = (sr_arena){.be = NULL, .base = NULL, .size = SIZE_MAX, .used = 0, .what = "measure"};
}

void sr_arena_init(sr_arena *arena, const sr_backend *be, size_t bytes, const char *what)
{
    arena->be = be;
    arena->size = bytes;
    arena->used = 0;
    arena->what = what;
    arena->base = sr_be_alloc(be, bytes);
    if (!arena->base)
        SR_FAIL("out of %s memory allocating %.1f MiB for %s; lower the batch size", sr_be_name(be),
                (double)bytes / 1048576.0, what);
    sr_be_zero(be, arena->base, bytes);
}

float *sr_arena_floats(sr_arena *arena, size_t count)
{
    const size_t bytes = sr_arena_floats_padded(count) * sizeof(float);
    SR_CHECK(arena->used + bytes <= arena->size,
             "internal: arena for %s exhausted (%zu + %zu > %zu bytes)", arena->what,
             arena->used, bytes, arena->size);
    float *p = arena->base ? (float *)(arena->base + arena->used) : NULL;
    arena->used += bytes;
    return p;
}

void sr_arena_release(sr_arena *arena)
{
    if (arena->base) {
        sr_be_forget(arena->be, arena->base, arena->size);
        sr_be_release(arena->be, arena->base);
    }
    arena->base = NULL;
    arena->size = arena->used = 0;
}
