/* C speedups of the protocol core's hot path (optional: every piece has a pure-Python twin).
 *
 * - BookCore: the sequencing state and the two sides of an order book, with ``apply_delta``
 *   and ``top_changed``. ``collector.protocol.book.OrderBook`` subclasses it (the other
 *   methods, snapshots, top-N, depth, are Python). Same fields, same outcomes and the same
 *   Python dicts (price -> amount) as the pure-Python ``PyBookCore``.
 * - BookChanges: the ``book_changes`` rows of a batch in one growable C array; ``take()``
 *   hands them over as column buffers (bytes) that become Arrow arrays without a Python
 *   object per row.
 * - apply_delta_rows(): one delta applied to a book, its rows appended and, when the top of
 *   book changed, its ``quotes`` row, in one call (the normalizer's per-frame hot path).
 * - has_long_digit_run(): the exactness proof's scan for 16 consecutive digits/dots.
 *
 * Pure: no I/O, no clock, no global state but a batch generation counter. Compiled by
 * setup.py; ``collector.protocol.native`` decides whether it is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { ST_SYNCING = 0, ST_LIVE = 1, ST_RESYNCING = 2 };
enum { APPLIED = 0, APPLIED_TOP = 1, SKIPPED = 2, DUPLICATE = 3, GAP = 4, CROSSED = 5 };

#define RUN_LIMIT 16 /* MAX_SIGNIFICANT_DIGITS + 1, see numbers.py */
#define STACK_LEVELS 64

static PyObject *str_book;        /* "book" (quotes.source) */
static unsigned long long batch_generation = 0;

/* -- levels: a (price, amount) sequence checked and converted before anything changes ---- */

typedef struct {
    /* new references: Python code can run inside the dict operations (the finalizer of a value
     * that a level replaces, the __eq__ of a key that is not a float) and could empty the
     * caller's list of levels, or a level list, while the call still uses them */
    PyObject *price, *amount;
    double p, a;
} Level;

typedef struct {
    Level *items;
    Py_ssize_t n; /* levels loaded (and referenced) */
    Level stack[STACK_LEVELS];
} Levels;

static int
number_value(PyObject *o, double *out, const char *what, Py_ssize_t i)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    /* exact int only (a subclass could run Python code inside the dict operations, while
     * this call holds borrowed references to the levels) */
    if (!PyLong_CheckExact(o)) {
        PyErr_Format(PyExc_TypeError, "level %zd: %s must be a float or int, not %.100s", i,
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static void
levels_free(Levels *L)
{
    for (Py_ssize_t i = 0; i < L->n; i++) {
        Py_DECREF(L->items[i].price);
        Py_DECREF(L->items[i].amount);
    }
    if (L->items != L->stack)
        PyMem_Free(L->items);
    L->items = L->stack;
    L->n = 0;
}

static int
levels_load(Levels *L, PyObject *seq)
{
    L->items = L->stack;
    L->n = 0;
    PyObject *fast = PySequence_Fast(seq, "levels must be a sequence of (price, amount) pairs");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **src = PySequence_Fast_ITEMS(fast);
    if (n > STACK_LEVELS) {
        L->items = PyMem_New(Level, (size_t)n); /* NULL on size overflow too */
        if (L->items == NULL) {
            L->items = L->stack;
            Py_DECREF(fast);
            PyErr_NoMemory();
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lvl = src[i];
        PyObject *p, *a;
        if (PyTuple_CheckExact(lvl) && PyTuple_GET_SIZE(lvl) == 2) {
            p = PyTuple_GET_ITEM(lvl, 0);
            a = PyTuple_GET_ITEM(lvl, 1);
        }
        else if (PyList_CheckExact(lvl) && PyList_GET_SIZE(lvl) == 2) {
            p = PyList_GET_ITEM(lvl, 0);
            a = PyList_GET_ITEM(lvl, 1);
        }
        else {
            PyErr_Format(PyExc_TypeError, "level %zd is not a (price, amount) pair: %.100s", i,
                         Py_TYPE(lvl)->tp_name);
            goto error;
        }
        Level *out = &L->items[i];
        if (number_value(p, &out->p, "price", i) < 0 || number_value(a, &out->a, "amount", i) < 0)
            goto error;
        out->price = Py_NewRef(p);
        out->amount = Py_NewRef(a);
        L->n = i + 1;
    }
    Py_DECREF(fast);
    return 0;
error:
    Py_DECREF(fast);
    levels_free(L);
    return -1;
}

/* -- BookCore ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *bids;          /* dict price -> amount */
    PyObject *asks;
    PyObject *top;           /* (bid, bid amount, ask, ask amount), None where a side is empty */
    PyObject *timestamp_us;  /* int or None */
    PyObject *expected_seq;  /* int or None */
    PyObject *received_seq;
    PyObject *key;           /* (product, symbol, grouping) */
    double best_bid;         /* -inf: no bids */
    double best_ask;         /* +inf: no asks */
    long long last_seq;
    long long skipped_count, skipped_since_sync, duplicate_count, gap_count, crossed_count;
    int state;
    unsigned long long rows_generation; /* BookChanges batch whose index is cached below */
    Py_ssize_t rows_index;
    PyObject *rows_key; /* the key object that index is of (``key`` can be replaced) */
} BookCore;

static PyObject *
none_top(void)
{
    return PyTuple_Pack(4, Py_None, Py_None, Py_None, Py_None);
}

static PyObject *
BookCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    BookCore *self = (BookCore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->bids = PyDict_New();
    self->asks = PyDict_New();
    self->top = none_top();
    if (self->bids == NULL || self->asks == NULL || self->top == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->timestamp_us = Py_NewRef(Py_None);
    self->expected_seq = Py_NewRef(Py_None);
    self->received_seq = Py_NewRef(Py_None);
    self->key = Py_NewRef(Py_None);
    self->best_bid = -INFINITY;
    self->best_ask = INFINITY;
    self->last_seq = -1;
    self->state = ST_SYNCING;
    self->rows_index = -1;
    return (PyObject *)self;
}

static int
BookCore_traverse(BookCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->bids);
    Py_VISIT(self->asks);
    Py_VISIT(self->top);
    Py_VISIT(self->timestamp_us);
    Py_VISIT(self->expected_seq);
    Py_VISIT(self->received_seq);
    Py_VISIT(self->key);
    Py_VISIT(self->rows_key);
    return 0;
}

static int
BookCore_clear(BookCore *self)
{
    Py_CLEAR(self->bids);
    Py_CLEAR(self->asks);
    Py_CLEAR(self->top);
    Py_CLEAR(self->timestamp_us);
    Py_CLEAR(self->expected_seq);
    Py_CLEAR(self->received_seq);
    Py_CLEAR(self->key);
    Py_CLEAR(self->rows_key);
    return 0;
}

static void
BookCore_dealloc(BookCore *self)
{
    PyObject_GC_UnTrack(self);
    BookCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
set_long(PyObject **slot, long long v)
{
    PyObject *o = PyLong_FromLongLong(v);
    if (o == NULL)
        return -1;
    Py_XSETREF(*slot, o);
    return 0;
}

static int
check_sides(BookCore *self)
{
    if (self->bids == NULL || !PyDict_CheckExact(self->bids) || self->asks == NULL ||
        !PyDict_CheckExact(self->asks)) {
        PyErr_SetString(PyExc_TypeError, "OrderBook.bids and .asks must be dicts");
        return -1;
    }
    return 0;
}

/* What a delta did to the top of one side: ``touched`` when a level at or better than the best
 * changed (or the best was deleted); ``amount``: the new best level's amount (a new reference:
 * Python code run by a later dict operation could drop the dict's), NULL when the side is empty
 * or the amount is to be looked up. */
typedef struct {
    int touched;
    PyObject *amount;
} SideTop;

/* The best price of a side after its best level was deleted: one pass over the keys.
 * ``*amount``: replaced by a new reference to the best level's amount (NULL: none found). */
static int
side_best(PyObject *side, int is_bid, double *out, PyObject **amount)
{
    double best = is_bid ? -INFINITY : INFINITY;
    Py_ssize_t pos = 0;
    PyObject *k, *v, *found = NULL;
    while (PyDict_Next(side, &pos, &k, &v)) {
        /* a key that is not a float may run Python code (__float__) that changes the dict:
         * its key and value are held meanwhile (PyDict_Next itself survives a change) */
        Py_INCREF(k);
        Py_INCREF(v);
        double x = PyFloat_CheckExact(k) ? PyFloat_AS_DOUBLE(k) : PyFloat_AsDouble(k);
        Py_DECREF(k);
        if (x == -1.0 && PyErr_Occurred()) {
            Py_DECREF(v);
            Py_XDECREF(found);
            return -1;
        }
        if (is_bid ? x > best : x < best) {
            best = x;
            Py_XSETREF(found, v);
        }
        else
            Py_DECREF(v);
    }
    *out = best;
    Py_XSETREF(*amount, found);
    return 0;
}

/* Levels into one side; ``*best`` follows them. Values were checked by levels_load: only dict
 * errors are possible. */
static int
apply_side(PyObject *side, const Levels *L, int is_bid, double *best_io, SideTop *top)
{
    double best = *best_io;
    int lost = 0;
    for (Py_ssize_t i = 0; i < L->n; i++) {
        const Level *lv = &L->items[i];
        if (lv->a != 0.0) {
            if (PyDict_SetItem(side, lv->price, lv->amount) < 0)
                return -1;
            if (is_bid ? lv->p >= best : lv->p <= best) {
                best = lv->p;
                top->touched = 1;
                Py_XSETREF(top->amount, Py_NewRef(lv->amount)); /* the value at ``best`` */
            }
        }
        else {
            int has = PyDict_Contains(side, lv->price);
            if (has < 0)
                return -1;
            if (has) {
                if (PyDict_DelItem(side, lv->price) < 0)
                    return -1;
                if (lv->p == best)
                    lost = 1;
            }
        }
    }
    if (lost) {
        top->touched = 1;
        if (side_best(side, is_bid, &best, &top->amount) < 0)
            return -1;
    }
    *best_io = best;
    return 0;
}

static int
same_value(PyObject *old, PyObject *now_obj, int has, double now)
{
    /* old top entry vs the new one (None when the side is empty) */
    if (!has)
        return old == Py_None;
    if (old == Py_None)
        return 0;
    if (now_obj != NULL && old == now_obj)
        return 1;
    double o = PyFloat_CheckExact(old) ? PyFloat_AS_DOUBLE(old) : PyFloat_AsDouble(old);
    if (o == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return o == now;
}

static int
amount_at(PyObject *side, double price, PyObject **out)
{
    PyObject *key = PyFloat_FromDouble(price);
    if (key == NULL)
        return -1;
    PyObject *amount = PyDict_GetItemWithError(side, key); /* borrowed */
    if (amount == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_KeyError, "best price %R is not a level of the book", key);
    Py_DECREF(key);
    if (amount == NULL)
        return -1;
    *out = amount;
    return 0;
}

/* The new top entries of one side: price and amount objects (new references) and whether they
 * equal the old ones. ``side_top`` NULL: look the amount up (the whole top is recomputed).
 * ``side`` and ``old`` are held by the caller. */
static int
top_side(BookCore *self, PyObject *side, int is_bid, const SideTop *side_top, PyObject *old,
         PyObject **price, PyObject **amount, int *same)
{
    PyObject *old_price = old ? PyTuple_GET_ITEM(old, is_bid ? 0 : 2) : NULL;
    PyObject *old_amount = old ? PyTuple_GET_ITEM(old, is_bid ? 1 : 3) : NULL;
    if (old != NULL && side_top != NULL && !side_top->touched) { /* nothing at or above best */
        *price = Py_NewRef(old_price);
        *amount = Py_NewRef(old_amount);
        *same = 1;
        return 0;
    }
    if (PyDict_GET_SIZE(side) == 0) {
        *price = Py_NewRef(Py_None);
        *amount = Py_NewRef(Py_None);
        *same = old != NULL && old_price == Py_None && old_amount == Py_None;
        return 0;
    }
    double best = is_bid ? self->best_bid : self->best_ask;
    PyObject *value = side_top != NULL ? side_top->amount : NULL;
    if (value == NULL && amount_at(side, best, &value) < 0)
        return -1;
    Py_INCREF(value); /* held: converting an amount that is not a float runs Python code */
    double v = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value) : PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred()) {
        Py_DECREF(value);
        return -1;
    }
    int same_price = old != NULL && same_value(old_price, NULL, 1, best);
    *same = same_price && same_value(old_amount, value, 1, v);
    *price = same_price ? Py_NewRef(old_price) : PyFloat_FromDouble(best);
    if (*price == NULL) {
        Py_DECREF(value);
        return -1;
    }
    *amount = value;
    return 0;
}

/* Update the cached top of book: 1 if it changed, 0 if not, -1 on error. ``bids``/``asks``:
 * what the delta did to each side (NULL: recompute that side from the dicts). */
static int
book_top_update(BookCore *self, const SideTop *bids, const SideTop *asks)
{
    if (check_sides(self) < 0) /* again: Python code may have run since the delta's check */
        return -1;
    /* the sides and the old top are held: converting a value that is not a float runs Python
     * code, which could replace them on the book */
    PyObject *bid_side = Py_NewRef(self->bids), *ask_side = Py_NewRef(self->asks);
    PyObject *old = self->top;
    old = old != NULL && PyTuple_CheckExact(old) && PyTuple_GET_SIZE(old) == 4 ? Py_NewRef(old)
                                                                              : NULL;
    PyObject *bp = NULL, *ba = NULL, *ap = NULL, *aa = NULL, *top = NULL;
    int same_b = 0, same_a = 0, result = -1;
    if (top_side(self, bid_side, 1, bids, old, &bp, &ba, &same_b) < 0 ||
        top_side(self, ask_side, 0, asks, old, &ap, &aa, &same_a) < 0)
        goto done;
    if (same_b && same_a) {
        result = 0;
        goto done;
    }
    top = PyTuple_New(4);
    if (top == NULL)
        goto done;
    PyTuple_SET_ITEM(top, 0, bp); /* steals the references */
    PyTuple_SET_ITEM(top, 1, ba);
    PyTuple_SET_ITEM(top, 2, ap);
    PyTuple_SET_ITEM(top, 3, aa);
    bp = ba = ap = aa = NULL;
    Py_XSETREF(self->top, top);
    result = 1;
done:
    Py_XDECREF(bp);
    Py_XDECREF(ba);
    Py_XDECREF(ap);
    Py_XDECREF(aa);
    Py_XDECREF(old);
    Py_DECREF(bid_side);
    Py_DECREF(ask_side);
    return result;
}

static int
book_top_changed(BookCore *self)
{
    return book_top_update(self, NULL, NULL);
}

/* One delta: the outcome (APPLIED ... CROSSED) or -1 on error. The book is untouched on a
 * type error in the levels (they are all checked before the first change). */
static int
book_apply(BookCore *self, const Levels *bids, const Levels *asks, long long seq,
           long long prev_seq, PyObject *timestamp_us)
{
    long long last = self->last_seq;
    if (self->state != ST_LIVE) {
        self->skipped_count++;
        self->skipped_since_sync++;
        return SKIPPED;
    }
    if (seq <= last) {
        if (set_long(&self->expected_seq, last) < 0 || set_long(&self->received_seq, seq) < 0)
            return -1;
        self->duplicate_count++;
        return DUPLICATE;
    }
    if (prev_seq != last) {
        if (set_long(&self->expected_seq, last) < 0 ||
            set_long(&self->received_seq, prev_seq) < 0)
            return -1;
        self->gap_count++;
        self->state = ST_RESYNCING;
        return GAP;
    }
    if (check_sides(self) < 0)
        return -1;
    /* the sides are held: Python code run by a dict operation (a replaced value's finalizer)
     * could replace them on the book */
    PyObject *bid_side = Py_NewRef(self->bids), *ask_side = Py_NewRef(self->asks);
    SideTop bid_top = {0, NULL}, ask_top = {0, NULL};
    int outcome = -1;
    if (bids->n && apply_side(bid_side, bids, 1, &self->best_bid, &bid_top) < 0)
        goto done;
    if (asks->n && apply_side(ask_side, asks, 0, &self->best_ask, &ask_top) < 0)
        goto done;
    int touched = bid_top.touched || ask_top.touched;
    self->last_seq = seq;
    Py_XSETREF(self->timestamp_us, Py_NewRef(timestamp_us));
    if (!touched) {
        outcome = APPLIED;
        goto done;
    }
    if (self->best_bid >= self->best_ask) {
        if (set_long(&self->received_seq, seq) < 0)
            goto done;
        Py_XSETREF(self->expected_seq, Py_NewRef(Py_None));
        self->crossed_count++;
        self->state = ST_RESYNCING;
        outcome = CROSSED;
        goto done;
    }
    int changed = book_top_update(self, &bid_top, &ask_top);
    if (changed >= 0)
        outcome = changed ? APPLIED_TOP : APPLIED;
done:
    Py_XDECREF(bid_top.amount);
    Py_XDECREF(ask_top.amount);
    Py_DECREF(bid_side);
    Py_DECREF(ask_side);
    return outcome;
}

static int
seq_value(PyObject *o, long long *out, const char *what)
{
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static PyObject *
BookCore_apply_delta(BookCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_delta(bids, asks, seq, prev_seq, timestamp_us=None)");
        return NULL;
    }
    long long seq, prev;
    if (seq_value(args[2], &seq, "seq") < 0 || seq_value(args[3], &prev, "prev_seq") < 0)
        return NULL;
    Levels bids, asks;
    if (levels_load(&bids, args[0]) < 0)
        return NULL;
    if (levels_load(&asks, args[1]) < 0) {
        levels_free(&bids);
        return NULL;
    }
    int outcome = book_apply(self, &bids, &asks, seq, prev, nargs == 5 ? args[4] : Py_None);
    levels_free(&bids);
    levels_free(&asks);
    if (outcome < 0)
        return NULL;
    return PyLong_FromLong(outcome);
}

static PyObject *
BookCore_top_changed(BookCore *self, PyObject *unused)
{
    int changed = book_top_changed(self);
    if (changed < 0)
        return NULL;
    return PyBool_FromLong(changed);
}

static PyMethodDef BookCore_methods[] = {
    {"apply_delta", (PyCFunction)(void (*)(void))BookCore_apply_delta, METH_FASTCALL,
     "apply_delta(bids, asks, seq, prev_seq, timestamp_us=None) -> outcome\n\n"
     "Apply one delta (absolute amounts, 0 deletes); returns an outcome constant."},
    {"top_changed", (PyCFunction)BookCore_top_changed, METH_NOARGS,
     "Recompute the cached top of book; True if it differs from the cached one."},
    {NULL},
};

static PyMemberDef BookCore_members[] = {
    {"bids", T_OBJECT_EX, offsetof(BookCore, bids), 0, "dict price -> amount"},
    {"asks", T_OBJECT_EX, offsetof(BookCore, asks), 0, "dict price -> amount"},
    {"_top", T_OBJECT_EX, offsetof(BookCore, top), 0, "cached top of book"},
    {"timestamp_us", T_OBJECT, offsetof(BookCore, timestamp_us), 0, NULL},
    {"expected_seq", T_OBJECT, offsetof(BookCore, expected_seq), 0, NULL},
    {"received_seq", T_OBJECT, offsetof(BookCore, received_seq), 0, NULL},
    {"key", T_OBJECT, offsetof(BookCore, key), 0, "(product, symbol, grouping)"},
    {"_best_bid", T_DOUBLE, offsetof(BookCore, best_bid), 0, NULL},
    {"_best_ask", T_DOUBLE, offsetof(BookCore, best_ask), 0, NULL},
    {"last_seq", T_LONGLONG, offsetof(BookCore, last_seq), 0, NULL},
    {"skipped_count", T_LONGLONG, offsetof(BookCore, skipped_count), 0, NULL},
    {"skipped_since_sync", T_LONGLONG, offsetof(BookCore, skipped_since_sync), 0, NULL},
    {"duplicate_count", T_LONGLONG, offsetof(BookCore, duplicate_count), 0, NULL},
    {"gap_count", T_LONGLONG, offsetof(BookCore, gap_count), 0, NULL},
    {"crossed_count", T_LONGLONG, offsetof(BookCore, crossed_count), 0, NULL},
    {"_state", T_INT, offsetof(BookCore, state), 0, "0 syncing, 1 live, 2 resyncing"},
    {NULL},
};

static PyTypeObject BookCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collector.protocol._speedups.BookCore",
    .tp_doc = "The C core of an order book (state, sides, apply_delta); see book.py.",
    .tp_basicsize = sizeof(BookCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = BookCore_new,
    .tp_traverse = (traverseproc)BookCore_traverse,
    .tp_clear = (inquiry)BookCore_clear,
    .tp_dealloc = (destructor)BookCore_dealloc,
    .tp_methods = BookCore_methods,
    .tp_members = BookCore_members,
};

/* -- BookChanges --------------------------------------------------------------------------- */

enum { ROW_SNAPSHOT = 1, ROW_ASK = 2, ROW_NO_TIMESTAMP = 4 };

/* The most rows of one batch: take() hands the side column over as an Arrow string array,
 * whose offsets are int32 (3 bytes a row). Past it append() is an OverflowError (the batch
 * stays valid) instead of offsets that wrap. A build may lower it (the tests do). */
#ifndef BOOK_CHANGES_MAX_ROWS
#define BOOK_CHANGES_MAX_ROWS (INT32_MAX / 3)
#endif

typedef struct {
    int64_t timestamp, local_ts, seq, prev_seq;
    double price, amount;
    int32_t book;
    uint8_t flags;
} Row;

typedef struct {
    PyObject_HEAD
    Row *rows;
    Py_ssize_t n, cap;
    PyObject *keys;      /* list: the books (product, symbol, grouping) of this batch */
    PyObject *key_index; /* dict key -> index in ``keys`` */
    unsigned long long generation;
} BookChanges;

static int
bc_reset_keys(BookChanges *self)
{
    PyObject *keys = PyList_New(0);
    PyObject *index = PyDict_New();
    if (keys == NULL || index == NULL) {
        Py_XDECREF(keys);
        Py_XDECREF(index);
        return -1;
    }
    Py_XSETREF(self->keys, keys);
    Py_XSETREF(self->key_index, index);
    self->generation = ++batch_generation;
    return 0;
}

static PyObject *
BookChanges_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "BookChanges() takes no arguments");
        return NULL;
    }
    BookChanges *self = (BookChanges *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    if (bc_reset_keys(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
BookChanges_traverse(BookChanges *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keys);
    Py_VISIT(self->key_index);
    return 0;
}

static int
BookChanges_clear(BookChanges *self)
{
    Py_CLEAR(self->keys);
    Py_CLEAR(self->key_index);
    return 0;
}

static void
BookChanges_dealloc(BookChanges *self)
{
    PyObject_GC_UnTrack(self);
    BookChanges_clear(self);
    PyMem_Free(self->rows);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
bc_key_index(BookChanges *self, PyObject *key)
{
    PyObject *found = PyDict_GetItemWithError(self->key_index, key);
    if (found != NULL)
        return PyLong_AsSsize_t(found);
    if (PyErr_Occurred())
        return -1;
    if (!PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 3) {
        PyErr_SetString(PyExc_TypeError, "a book key is a (product, symbol, grouping) tuple");
        return -1;
    }
    Py_ssize_t index = PyList_GET_SIZE(self->keys);
    if (index >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many books in one batch");
        return -1;
    }
    PyObject *number = PyLong_FromSsize_t(index);
    if (number == NULL)
        return -1;
    /* the list first: an index in the dict must always name a key of the list (a dangling one
     * would be handed to the next new book too, and its rows would name the wrong book) */
    if (PyList_Append(self->keys, key) < 0) {
        Py_DECREF(number);
        return -1;
    }
    int err = PyDict_SetItem(self->key_index, key, number);
    Py_DECREF(number);
    if (err < 0) {
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *exc = PyErr_GetRaisedException();
        (void)PyList_SetSlice(self->keys, index, index + 1, NULL); /* no Python code: a list */
        PyErr_SetRaisedException(exc);
#else
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        (void)PyList_SetSlice(self->keys, index, index + 1, NULL); /* no Python code: a list */
        PyErr_Restore(type, value, traceback);
#endif
        return -1;
    }
    return index;
}

static int
bc_reserve(BookChanges *self, Py_ssize_t more)
{
    if (more > BOOK_CHANGES_MAX_ROWS - self->n) {
        PyErr_Format(PyExc_OverflowError,
                     "a book_changes batch holds at most %zd rows (int32 string offsets); "
                     "take() it sooner", (Py_ssize_t)BOOK_CHANGES_MAX_ROWS);
        return -1;
    }
    if (self->n + more <= self->cap)
        return 0;
    Py_ssize_t cap = self->cap ? self->cap : 1024;
    while (cap < self->n + more)
        cap *= 2;
    if (cap > BOOK_CHANGES_MAX_ROWS) /* n + more is not */
        cap = BOOK_CHANGES_MAX_ROWS;
    Row *rows = PyMem_Realloc(self->rows, sizeof(Row) * (size_t)cap);
    if (rows == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->rows = rows;
    self->cap = cap;
    return 0;
}

/* A row's timestamp: an int64, or None (flags |= ROW_NO_TIMESTAMP). */
static int
timestamp_value(PyObject *timestamp, int64_t *ts, uint8_t *flags)
{
    *ts = 0;
    if (timestamp == Py_None) {
        *flags |= ROW_NO_TIMESTAMP;
        return 0;
    }
    long long v;
    if (seq_value(timestamp, &v, "timestamp") < 0)
        return -1;
    *ts = v;
    return 0;
}

static int
bc_append(BookChanges *self, Py_ssize_t book, PyObject *timestamp, int64_t local_ts,
          int is_snapshot, int64_t seq, int64_t prev_seq, const Levels *bids, const Levels *asks)
{
    uint8_t flags = is_snapshot ? ROW_SNAPSHOT : 0;
    int64_t ts;
    if (timestamp_value(timestamp, &ts, &flags) < 0)
        return -1;
    if (bc_reserve(self, bids->n + asks->n) < 0)
        return -1;
    Row *out = self->rows + self->n;
    for (int side = 0; side < 2; side++) {
        const Levels *L = side ? asks : bids;
        uint8_t f = side ? (uint8_t)(flags | ROW_ASK) : flags;
        for (Py_ssize_t i = 0; i < L->n; i++, out++) {
            out->timestamp = ts;
            out->local_ts = local_ts;
            out->seq = seq;
            out->prev_seq = prev_seq;
            out->price = L->items[i].p;
            out->amount = L->items[i].a;
            out->book = (int32_t)book;
            out->flags = f;
        }
    }
    self->n += bids->n + asks->n;
    return 0;
}

static PyObject *
BookChanges_append(BookChanges *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "append(key, timestamp, local_ts, is_snapshot, seq, "
                                         "prev_seq, bids, asks)");
        return NULL;
    }
    long long local_ts, seq, prev;
    if (seq_value(args[2], &local_ts, "local_ts") < 0 || seq_value(args[4], &seq, "seq") < 0 ||
        seq_value(args[5], &prev, "prev_seq") < 0)
        return NULL;
    int snapshot = PyObject_IsTrue(args[3]);
    if (snapshot < 0)
        return NULL;
    Py_ssize_t book = bc_key_index(self, args[0]);
    if (book < 0)
        return NULL;
    Levels bids, asks;
    if (levels_load(&bids, args[6]) < 0)
        return NULL;
    if (levels_load(&asks, args[7]) < 0) {
        levels_free(&bids);
        return NULL;
    }
    int err = bc_append(self, book, args[1], local_ts, snapshot, seq, prev, &bids, &asks);
    levels_free(&bids);
    levels_free(&asks);
    if (err < 0)
        return NULL;
    Py_RETURN_NONE;
}

#define COLUMN(name, type, count)                                                          \
    PyObject *name##_obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(type) * (count)); \
    if (name##_obj == NULL)                                                                \
        goto error;                                                                        \
    PyTuple_SET_ITEM(result, slot++, name##_obj);                                          \
    type *name = (type *)PyBytes_AS_STRING(name##_obj);

static PyObject *
BookChanges_take(BookChanges *self, PyObject *unused)
{
    /* (rows, keys, timestamp, timestamp_validity|None, local_timestamp, seq, prev_seq, price,
     *  amount, book index, is_snapshot bitmap, side offsets, side data): the batch as Arrow
     *  buffers (int64, float64, int32 little-endian; bitmaps LSB first); resets the buffer. */
    Py_ssize_t n = self->n;
    if (n > BOOK_CHANGES_MAX_ROWS) { /* bc_reserve keeps it below: the offsets would wrap */
        PyErr_SetString(PyExc_OverflowError, "book_changes batch too large for int32 offsets");
        return NULL;
    }
    Py_ssize_t bitmap_bytes = (n + 7) / 8;
    int any_null = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (self->rows[i].flags & ROW_NO_TIMESTAMP) {
            any_null = 1;
            break;
        }
    PyObject *result = PyTuple_New(13);
    if (result == NULL)
        return NULL;
    Py_ssize_t slot = 0;
    PyObject *count = PyLong_FromSsize_t(n);
    if (count == NULL)
        goto error;
    PyTuple_SET_ITEM(result, slot++, count);
    PyTuple_SET_ITEM(result, slot++, Py_NewRef(self->keys));
    COLUMN(ts, int64_t, n)
    uint8_t *ts_valid = NULL;
    if (any_null) {
        COLUMN(valid, uint8_t, bitmap_bytes)
        ts_valid = valid;
        memset(ts_valid, 0, (size_t)bitmap_bytes);
    }
    else
        PyTuple_SET_ITEM(result, slot++, Py_NewRef(Py_None));
    COLUMN(local, int64_t, n)
    COLUMN(seq, int64_t, n)
    COLUMN(prev, int64_t, n)
    COLUMN(price, double, n)
    COLUMN(amount, double, n)
    COLUMN(book, int32_t, n)
    COLUMN(snap, uint8_t, bitmap_bytes)
    COLUMN(offsets, int32_t, n + 1)
    COLUMN(side, char, 3 * n)
    memset(snap, 0, (size_t)bitmap_bytes);
    for (Py_ssize_t i = 0; i < n; i++) {
        const Row *r = &self->rows[i];
        ts[i] = r->timestamp;
        local[i] = r->local_ts;
        seq[i] = r->seq;
        prev[i] = r->prev_seq;
        price[i] = r->price;
        amount[i] = r->amount;
        book[i] = r->book;
        if (r->flags & ROW_SNAPSHOT)
            snap[i >> 3] |= (uint8_t)(1u << (i & 7));
        if (ts_valid != NULL && !(r->flags & ROW_NO_TIMESTAMP))
            ts_valid[i >> 3] |= (uint8_t)(1u << (i & 7));
        offsets[i] = (int32_t)(3 * i);
        memcpy(side + 3 * i, (r->flags & ROW_ASK) ? "ask" : "bid", 3);
    }
    offsets[n] = (int32_t)(3 * n);
    if (bc_reset_keys(self) < 0)
        goto error;
    self->n = 0;
    if (self->cap > (1 << 20)) { /* a burst: give the memory back */
        PyMem_Free(self->rows);
        self->rows = NULL;
        self->cap = 0;
    }
    return result;
error:
    Py_DECREF(result);
    return NULL;
}

static Py_ssize_t
BookChanges_len(BookChanges *self)
{
    return self->n;
}

static PyMethodDef BookChanges_methods[] = {
    {"append", (PyCFunction)(void (*)(void))BookChanges_append, METH_FASTCALL,
     "append(key, timestamp, local_ts, is_snapshot, seq, prev_seq, bids, asks)\n\n"
     "The rows of one frame: every bid level, then every ask level."},
    {"take", (PyCFunction)BookChanges_take, METH_NOARGS,
     "The batch as column buffers (see rows.book_changes_arrays); resets the buffer."},
    {NULL},
};

static PySequenceMethods BookChanges_as_sequence = {
    .sq_length = (lenfunc)BookChanges_len,
};

static PyTypeObject BookChangesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collector.protocol._speedups.BookChanges",
    .tp_doc = "The book_changes rows of one batch, in C arrays; len() is the row count.",
    .tp_basicsize = sizeof(BookChanges),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = BookChanges_new,
    .tp_traverse = (traverseproc)BookChanges_traverse,
    .tp_clear = (inquiry)BookChanges_clear,
    .tp_dealloc = (destructor)BookChanges_dealloc,
    .tp_methods = BookChanges_methods,
    .tp_as_sequence = &BookChanges_as_sequence,
};

/* -- the per-frame hot path ---------------------------------------------------------------- */

static PyObject *
quote_row(BookCore *book, PyObject *timestamp, PyObject *local_ts, PyObject *seq)
{
    /* (product, symbol, timestamp, local_ts, ask_amount, ask, bid, bid_amount, "book",
     *  grouping, seq): rows.QUOTES_COLUMNS after "exchange" */
    PyObject *row = PyTuple_New(11);
    if (row == NULL)
        return NULL;
    /* read after the allocation: it can run the garbage collector, so Python code that could
     * replace (and free) the book's key or top */
    PyObject *key = book->key, *top = book->top;
    if (key == NULL || !PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 3 || top == NULL ||
        !PyTuple_CheckExact(top) || PyTuple_GET_SIZE(top) != 4) {
        Py_DECREF(row);
        PyErr_SetString(PyExc_TypeError, "book.key or book._top is not set");
        return NULL;
    }
    PyObject *items[11] = {
        PyTuple_GET_ITEM(key, 0), PyTuple_GET_ITEM(key, 1), timestamp, local_ts,
        PyTuple_GET_ITEM(top, 3), PyTuple_GET_ITEM(top, 2), PyTuple_GET_ITEM(top, 0),
        PyTuple_GET_ITEM(top, 1), str_book, PyTuple_GET_ITEM(key, 2), seq,
    };
    for (int i = 0; i < 11; i++)
        PyTuple_SET_ITEM(row, i, Py_NewRef(items[i]));
    return row;
}

static PyObject *
apply_delta_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "apply_delta_rows(book, bids, asks, seq, prev_seq, "
                                         "timestamp_us, local_ts, book_changes, quotes)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &BookCoreType) ||
        !PyObject_TypeCheck(args[7], &BookChangesType) || !PyList_CheckExact(args[8])) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_delta_rows needs a BookCore, a BookChanges and a list");
        return NULL;
    }
    BookCore *book = (BookCore *)args[0];
    BookChanges *rows = (BookChanges *)args[7];
    long long seq, prev, local_ts;
    if (seq_value(args[3], &seq, "seq") < 0 || seq_value(args[4], &prev, "prev_seq") < 0 ||
        seq_value(args[6], &local_ts, "local_ts") < 0)
        return NULL;
    Levels bids, asks;
    if (levels_load(&bids, args[1]) < 0)
        return NULL;
    if (levels_load(&asks, args[2]) < 0) {
        levels_free(&bids);
        return NULL;
    }
    if (book->key == NULL || !PyTuple_CheckExact(book->key) || PyTuple_GET_SIZE(book->key) != 3) {
        PyErr_SetString(PyExc_TypeError, "book.key must be a (product, symbol, grouping) tuple");
        goto error;
    }
    /* what would make the rows fail is checked before the book changes: a delta applied
     * without its rows would be a silent hole in book_changes */
    int64_t ts;
    uint8_t flags = 0;
    if (timestamp_value(args[5], &ts, &flags) < 0 || bc_reserve(rows, bids.n + asks.n) < 0)
        goto error;
    Py_ssize_t index = book->rows_index;
    /* the cached index is of this batch and of this key object (the key may be replaced); a
     * key indexed for a delta that is not applied names no row (harmless) */
    if (book->rows_generation != rows->generation || index < 0 || book->rows_key != book->key) {
        PyObject *key = Py_NewRef(book->key); /* hashing it can run Python code */
        index = bc_key_index(rows, key);
        if (index < 0) {
            Py_DECREF(key);
            goto error;
        }
        book->rows_generation = rows->generation;
        book->rows_index = index;
        Py_XSETREF(book->rows_key, key);
    }
    int outcome = book_apply(book, &bids, &asks, seq, prev, args[5]);
    if (outcome == APPLIED || outcome == APPLIED_TOP) {
        if (bc_append(rows, index, args[5], local_ts, 0, seq, prev, &bids, &asks) < 0)
            goto error;
        if (outcome == APPLIED_TOP) {
            PyObject *row = quote_row(book, args[5], args[6], args[3]);
            if (row == NULL)
                goto error;
            int err = PyList_Append(args[8], row);
            Py_DECREF(row);
            if (err < 0)
                goto error;
        }
    }
    levels_free(&bids);
    levels_free(&asks);
    if (outcome < 0)
        return NULL;
    return PyLong_FromLong(outcome);
error:
    levels_free(&bids);
    levels_free(&asks);
    return NULL;
}

/* -- exactness scan ------------------------------------------------------------------------ */

static unsigned char digit_or_dot[256];

/* Is there a run of RUN_LIMIT digits/dots? Looks at every RUN_LIMIT-th byte first: a byte that
 * is not a digit rules out every run through it, so most of a frame is skipped. */
static int
long_digit_run(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = RUN_LIMIT - 1; /* the last byte of the window p[i - 15 .. i] */
    while (i < n) {
        if (!digit_or_dot[p[i]]) {
            i += RUN_LIMIT;
            continue;
        }
        Py_ssize_t j = i - 1; /* walk back over the run that ends at i */
        while (j > i - RUN_LIMIT && digit_or_dot[p[j]])
            j--;
        if (j == i - RUN_LIMIT)
            return 1;
        i = j + RUN_LIMIT; /* p[j] is not a digit: the next possible run ends there */
    }
    return 0;
}

static PyObject *
has_long_digit_run(PyObject *module, PyObject *arg)
{
    if (PyBytes_CheckExact(arg))
        return PyBool_FromLong(
            long_digit_run((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int found = long_digit_run(view.buf, view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

/* -- row tuples to columns ------------------------------------------------------------- */

static PyObject *
columns_of(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    /* columns_of(rows, width) -> [column 0 list, ..., column width-1 list]: the transpose of a
     * list of equally long tuples (the tuple tables' hand-over), one pass, no new values */
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "columns_of(rows: list[tuple], width: int)");
        return NULL;
    }
    Py_ssize_t width = PyLong_AsSsize_t(args[1]);
    if (width < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "columns_of: width must be >= 0");
        return NULL;
    }
    PyObject *rows = args[0];
    Py_ssize_t n = PyList_GET_SIZE(rows);
    /* every list first: an allocation can run the garbage collector, so Python code that could
     * change ``rows``; they are checked after it, and the copy runs none */
    PyObject *columns = PyList_New(width);
    if (columns == NULL)
        return NULL;
    for (Py_ssize_t c = 0; c < width; c++) {
        PyObject *column = PyList_New(n);
        if (column == NULL) {
            Py_DECREF(columns);
            return NULL;
        }
        PyList_SET_ITEM(columns, c, column);
    }
    if (PyList_GET_SIZE(rows) != n) {
        Py_DECREF(columns);
        PyErr_SetString(PyExc_RuntimeError, "columns_of: the rows changed during the call");
        return NULL;
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != width) {
            Py_DECREF(columns);
            PyErr_Format(PyExc_ValueError, "row %zd is not a tuple of %zd values", r, width);
            return NULL;
        }
    }
    for (Py_ssize_t c = 0; c < width; c++) {
        PyObject *column = PyList_GET_ITEM(columns, c);
        for (Py_ssize_t r = 0; r < n; r++)
            PyList_SET_ITEM(column, r, Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(rows, r), c)));
    }
    return columns;
}

static PyMethodDef module_methods[] = {
    {"apply_delta_rows", (PyCFunction)(void (*)(void))apply_delta_rows, METH_FASTCALL,
     "apply_delta_rows(book, bids, asks, seq, prev_seq, timestamp_us, local_ts, book_changes,"
     " quotes) -> outcome\n\n"
     "book.apply_delta(...); when applied, the frame's rows into book_changes and, when the\n"
     "top of book changed, its quotes row appended to quotes."},
    {"columns_of", (PyCFunction)(void (*)(void))columns_of, METH_FASTCALL,
     "columns_of(rows, width) -> list of column lists (the transpose of equally long tuples)."},
    {"has_long_digit_run", has_long_digit_run, METH_O,
     "True if the bytes hold 16 or more consecutive digits/dots (see numbers.py)."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "collector.protocol._speedups",
    .m_doc = "C speedups of the protocol core's hot path (see _speedups.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&BookCoreType) < 0 || PyType_Ready(&BookChangesType) < 0)
        return NULL;
    for (int c = '0'; c <= '9'; c++)
        digit_or_dot[c] = 1;
    digit_or_dot['.'] = 1;
    str_book = PyUnicode_InternFromString("book");
    if (str_book == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "BookCore", (PyObject *)&BookCoreType) < 0 ||
        PyModule_AddObjectRef(m, "BookChanges", (PyObject *)&BookChangesType) < 0 ||
        PyModule_AddIntConstant(m, "RUN_LIMIT", RUN_LIMIT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
