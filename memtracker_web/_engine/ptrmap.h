/* memtracker_web/_engine/ptrmap.h: MtPtrMap, the engine's hash table: pointer
 * => uint32_t. The hook's lookups (mt_pm_hash, mt_pm_get, mt_pm_put,
 * mt_pm_pop, mt_pm_delete_at) are static inline here, so the hot path keeps
 * them inline.
 */
#ifndef MT_ENGINE_PTRMAP_H
#define MT_ENGINE_PTRMAP_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* PtrMap: uintptr_t => uint32_t, open addressing, linear probing,     */
/* backward-shift deletion (no tombstones). Key 0 marks an empty slot. */
/* Two parallel arrays: 12 bytes a slot, load <= 3/4.                  */
/* ------------------------------------------------------------------ */

typedef struct {
    uintptr_t *keys;
    uint32_t *vals;
    size_t mask;        /* capacity - 1, capacity a power of two; 0 when unallocated */
    size_t used;
    size_t limit;       /* grow before used reaches this: 3/4 of capacity */
    unsigned shift;     /* 64 - log2(capacity) */
} MtPtrMap;

static inline size_t
mt_pm_hash(const MtPtrMap *m, uintptr_t key)
{
    /* Fibonacci hashing. Addresses are multiples of 16, so the multiplier is
     * 2^64 / golden ratio divided by 16: on key = 16 k the product is k times
     * (nearly) 2^64 / golden ratio, as if the alignment bits were shifted out.
     * (Multiplying by 2^64 / golden ratio itself would, in effect, multiply k
     * by 16 / golden ratio: clusters.) */
    return (size_t)(((uint64_t)key * (UINT64_C(0x9E3779B97F4A7C15) >> 4)) >> m->shift);
}

static void
mt_pm_free(MtPtrMap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static int
mt_pm_alloc(MtPtrMap *m, unsigned bits)
{
    size_t cap = (size_t)1 << bits;
    m->keys = (uintptr_t *)calloc(cap, sizeof(uintptr_t));
    m->vals = (uint32_t *)malloc(cap * sizeof(uint32_t));
    if (m->keys == NULL || m->vals == NULL) {
        free(m->keys);
        free(m->vals);
        m->keys = NULL;
        m->vals = NULL;
        m->mask = 0;
        return -1;
    }
    m->mask = cap - 1;
    m->limit = cap / 4 * 3;
    m->shift = 64 - bits;
    m->used = 0;
    return 0;
}

static void
mt_pm_put_fresh(MtPtrMap *m, uintptr_t key, uint32_t val)
{
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        i = (i + 1) & m->mask;
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->used++;
}

static int
mt_pm_grow(MtPtrMap *m)
{
    unsigned bits = m->mask ? (unsigned)(64 - m->shift) + 1 : 6;
    MtPtrMap bigger;
    if (bits > 40 || mt_pm_alloc(&bigger, bits) < 0) {
        return -1;
    }
    if (m->mask) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->keys[i] != 0) {
                mt_pm_put_fresh(&bigger, m->keys[i], m->vals[i]);
            }
        }
    }
    mt_pm_free(m);
    *m = bigger;
    return 0;
}

/* Insert or replace. Returns 1 when a previous value was replaced (stored in
 * *old), 0 for a new key, -1 when memory ran out (nothing stored). One probe
 * sequence finds the key or the empty slot it goes to. */
static inline int
mt_pm_put(MtPtrMap *m, uintptr_t key, uint32_t val, uint32_t *old)
{
    if (m->used >= m->limit) {      /* also true when unallocated */
        if (mt_pm_grow(m) < 0) {
            return -1;
        }
    }
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            if (old) {
                *old = m->vals[i];
            }
            m->vals[i] = val;
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->used++;
    return 0;
}

static inline int
mt_pm_get(const MtPtrMap *m, uintptr_t key, uint32_t *val)
{
    if (m->used == 0) {
        return 0;
    }
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 0;
}

static void
mt_pm_delete_shift(MtPtrMap *m, size_t i)
{
    /* Backward-shift deletion keeps every probe sequence unbroken. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->keys[j] == 0) {
            break;
        }
        size_t home = mt_pm_hash(m, m->keys[j]);
        /* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
        int in_range = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!in_range) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->used--;
}

static inline void
mt_pm_delete_at(MtPtrMap *m, size_t i)
{
    if (m->keys[(i + 1) & m->mask] == 0) {
        m->keys[i] = 0;     /* nothing probed past i: no shifting */
        m->used--;
        return;
    }
    mt_pm_delete_shift(m, i);
}

static inline int
mt_pm_pop(MtPtrMap *m, uintptr_t key, uint32_t *val)
{
    if (m->used == 0) {
        return 0;
    }
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            if (val) {
                *val = m->vals[i];
            }
            mt_pm_delete_at(m, i);
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 0;
}

static size_t
mt_pm_bytes(const MtPtrMap *m)
{
    return m->mask ? (m->mask + 1) * (sizeof(uintptr_t) + sizeof(uint32_t)) : 0;
}

#endif /* MT_ENGINE_PTRMAP_H */
