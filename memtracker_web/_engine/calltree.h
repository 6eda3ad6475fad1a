/* memtracker_web/_engine/calltree.h: a captured type's call tree (MtNode,
 * MtTree). Its functions are in calltree.c.
 */
#ifndef MT_ENGINE_CALLTREE_H
#define MT_ENGINE_CALLTREE_H

#include <Python.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* Call trees                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    PyCodeObject *code;     /* strong reference; NULL for the root */
    int32_t lasti;          /* byte offset of the instruction */
    uint32_t parent;
    uint32_t flags;         /* MT_NODE_TRUNCATED: absorbed pruned or overflowing children */
    uint32_t pad;
    uint64_t total;         /* allocations whose innermost captured frame is this node */
    uint64_t retained;      /* of those, still alive */
} MtNode;

#define MT_NODE_TRUNCATED 1u

typedef struct {
    MtNode *nodes;            /* nodes[0] is the root */
    uint32_t n_nodes, cap_nodes, max_nodes;
    uint32_t *children;     /* (parent, code, lasti) => node; open addressing, 0 = empty */
    uint32_t children_mask;
    int depth;
    uint32_t sample_every;
    uint32_t countdown;     /* allocations to pass over before the next path is taken */
    uint32_t rng;           /* xorshift32 state for the gaps between paths (never 0) */
    uint64_t overflow;          /* allocations attributed to a shorter path: the tree was full */
    uint64_t pruned_nodes;      /* nodes removed by pruning, over the tree's life */
    uint64_t pruned_total;      /* allocations folded into ancestors by pruning */
    uint64_t unattributed;      /* sampled allocations made with no Python frame */
    uint64_t layout;            /* names how the nodes are numbered: new for each tree and each pruning */
    int wants_prune;
} MtTree;

/* After a path is taken, how many allocations to pass over before the next one, for
 * one path in about n: a gap drawn uniformly from 0 .. 2n-2 (mean n-1). A fixed step
 * keeps in step with an app that makes the same objects in the same order each
 * request: making two strs a request, one kept and one let go, every path taken at
 * a step of 8 is the one let go's, and the leak's line is never seen. Runs in the
 * hook: no allocation, no Python. */
static inline uint32_t
mt_tree_next_gap(MtTree *t, uint32_t n)
{
    if (n <= 1) {
        return 0;
    }
    uint32_t x = t->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    t->rng = x;
    return x % (2u * n - 1u);
}

static inline size_t
mt_tree_child_hash(const MtTree *t, uint32_t parent, PyCodeObject *code, int32_t lasti)
{
    uint64_t h = ((uint64_t)(uintptr_t)code >> 4) * UINT64_C(0x9E3779B97F4A7C15);
    h ^= (uint64_t)(uint32_t)lasti * UINT64_C(0xC2B2AE3D27D4EB4F);
    h ^= (uint64_t)parent * UINT64_C(0x165667B19E3779F9);
    h ^= h >> 29;
    return (size_t)(h & t->children_mask);
}

#endif /* MT_ENGINE_CALLTREE_H */
