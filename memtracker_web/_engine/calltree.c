/* memtracker_web/_engine/calltree.c: making, growing and freeing call trees;
 * mt_tree_child runs in the hook (it adds the nodes of a captured stack).
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* The last layout number given (see MtTree.layout); trees are made and pruned at
 * safe points only, with the GIL held. */
static uint64_t mt_tree_layouts;

static MtTree *
mt_tree_new(int depth, uint32_t sample_every, uint32_t max_nodes)
{
    MtTree *t = (MtTree *)calloc(1, sizeof(MtTree));
    if (t == NULL) {
        return NULL;
    }
    uint32_t want = 64;
    while (want < max_nodes * 2u + 2u && want < (1u << 22)) {
        want <<= 1;
    }
    t->children = (uint32_t *)calloc(want, sizeof(uint32_t));
    t->cap_nodes = 64;
    t->nodes = (MtNode *)calloc(t->cap_nodes, sizeof(MtNode));
    if (t->children == NULL || t->nodes == NULL) {
        free(t->children);
        free(t->nodes);
        free(t);
        return NULL;
    }
    t->children_mask = want - 1;
    t->n_nodes = 1;             /* the root */
    t->max_nodes = max_nodes;
    t->depth = depth;
    t->sample_every = sample_every ? sample_every : 1;
    t->layout = ++mt_tree_layouts;
    /* any non-zero seed; each tree its own (the first allocation's path is taken) */
    t->rng = (uint32_t)(((uintptr_t)t >> 4) * UINT64_C(2654435761)) | 1u;
    return t;
}

/* Drop the strong references a tree holds. Safe point only: it may run
 * arbitrary deallocation code. The tree must already be unreachable from
 * the hook. */
static void
mt_tree_free(MtTree *t)
{
    if (t == NULL) {
        return;
    }
    for (uint32_t i = 1; i < t->n_nodes; i++) {
        Py_XDECREF(t->nodes[i].code);
    }
    free(t->nodes);
    free(t->children);
    free(t);
}

static size_t
mt_tree_bytes(const MtTree *t)
{
    return t ? sizeof(MtTree) + (size_t)t->cap_nodes * sizeof(MtNode)
                   + ((size_t)t->children_mask + 1) * sizeof(uint32_t)
             : 0;
}

/* Find or create the child of `parent` for (code, lasti). Returns 0 when the
 * tree is full or memory ran out. Runs in the hook: no Python calls, only an
 * incref of a code object that the frame already keeps alive. */
MT_HOOK_ONLY uint32_t
mt_tree_child(MtTree *t, uint32_t parent, PyCodeObject *code, int32_t lasti)
{
    size_t i = mt_tree_child_hash(t, parent, code, lasti);
    for (;;) {
        uint32_t n = t->children[i];
        if (n == 0) {
            break;
        }
        MtNode *node = &t->nodes[n];
        if (node->parent == parent && node->code == code && node->lasti == lasti) {
            return n;
        }
        i = (i + 1) & t->children_mask;
    }
    if (t->n_nodes > t->max_nodes) {
        return 0;
    }
    if (t->n_nodes == t->cap_nodes) {
        uint32_t cap = t->cap_nodes * 2;
        MtNode *nodes = (MtNode *)realloc(t->nodes, (size_t)cap * sizeof(MtNode));
        if (nodes == NULL) {
            return 0;
        }
        t->nodes = nodes;
        t->cap_nodes = cap;
    }
    uint32_t n = t->n_nodes++;
    MtNode *node = &t->nodes[n];
    memset(node, 0, sizeof(*node));
    Py_INCREF(code);
    node->code = code;
    node->lasti = lasti;
    node->parent = parent;
    t->children[i] = n;
    return n;
}

static void
mt_tree_rebuild_children(MtTree *t)
{
    memset(t->children, 0, ((size_t)t->children_mask + 1) * sizeof(uint32_t));
    for (uint32_t n = 1; n < t->n_nodes; n++) {
        MtNode *node = &t->nodes[n];
        size_t i = mt_tree_child_hash(t, node->parent, node->code, node->lasti);
        while (t->children[i] != 0) {
            i = (i + 1) & t->children_mask;
        }
        t->children[i] = n;
    }
}
