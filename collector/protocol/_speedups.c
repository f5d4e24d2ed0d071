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
    double p, a;
} Level;

typedef struct {
    Level *items;
    Py_ssize_t n;
    Level stack[STACK_LEVELS];
} Levels;

static int
number_value(PyObject *o, double *out, const char *what, Py_ssize_t i)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    /* exact int only: a subclass (or another type's __float__) would run Python code */
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

static int
price_value(PyObject *o, double *out, Py_ssize_t i)
{
    if (number_value(o, out, "price", i) < 0)
        return -1;
    if (isnan(*out)) {
        PyErr_Format(PyExc_ValueError, "level %zd: price is NaN", i);
        return -1;
    }
    if (*out == 0.0)
        *out = 0.0; /* -0.0 and 0.0 are one price (as for a dict key) */
    return 0;
}

static void
levels_free(Levels *L)
{
    if (L->items != L->stack)
        PyMem_Free(L->items);
    L->items = L->stack;
    L->n = 0;
}

/* The levels as doubles. Only exact floats and ints are read, so no Python code runs here and
 * nothing is kept of the caller's objects. */
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
        if (price_value(p, &out->p, i) < 0 || number_value(a, &out->a, "amount", i) < 0)
            goto error;
    }
    L->n = n;
    Py_DECREF(fast);
    return 0;
error:
    Py_DECREF(fast);
    levels_free(L);
    return -1;
}

/* -- Side: one side of a book, price -> amount, an open-addressing hash table of doubles ---- */

/* A slot is empty when its amount is 0.0: a level with amount 0 is a deletion, never stored.
 * Linear probing, deletion by backward shift (no tombstones), at most half full. */
typedef struct {
    double price, amount;
} Slot;

typedef struct {
    Slot *slots;
    Py_ssize_t cap; /* 0 or a power of two */
    Py_ssize_t len;
} Side;

#define SIDE_MIN_CAP 64

static inline size_t
slot_of(double price, size_t mask)
{
    uint64_t x;
    memcpy(&x, &price, sizeof x); /* -0.0 was made 0.0 and NaN refused by price_value */
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    x ^= x >> 33;
    return (size_t)x & mask;
}

static Py_ssize_t
side_find(const Side *s, double price)
{
    if (s->cap == 0)
        return -1;
    size_t mask = (size_t)s->cap - 1, i = slot_of(price, mask);
    while (s->slots[i].amount != 0.0) {
        if (s->slots[i].price == price)
            return (Py_ssize_t)i;
        i = (i + 1) & mask;
    }
    return -1;
}

static int
side_resize(Side *s, Py_ssize_t cap)
{
    Slot *slots = PyMem_New(Slot, (size_t)cap);
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(slots, 0, sizeof(Slot) * (size_t)cap);
    size_t mask = (size_t)cap - 1;
    for (Py_ssize_t j = 0; j < s->cap; j++) {
        if (s->slots[j].amount == 0.0)
            continue;
        size_t i = slot_of(s->slots[j].price, mask);
        while (slots[i].amount != 0.0)
            i = (i + 1) & mask;
        slots[i] = s->slots[j];
    }
    PyMem_Free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

/* Set a level (amount != 0). */
static int
side_set(Side *s, double price, double amount)
{
    if ((s->len + 1) * 2 > s->cap) {
        if (s->cap > PY_SSIZE_T_MAX / 4 / (Py_ssize_t)sizeof(Slot)) {
            PyErr_NoMemory();
            return -1;
        }
        if (side_resize(s, s->cap ? s->cap * 2 : SIDE_MIN_CAP) < 0)
            return -1;
    }
    size_t mask = (size_t)s->cap - 1, i = slot_of(price, mask);
    while (s->slots[i].amount != 0.0) {
        if (s->slots[i].price == price) {
            s->slots[i].amount = amount;
            return 0;
        }
        i = (i + 1) & mask;
    }
    s->slots[i].price = price;
    s->slots[i].amount = amount;
    s->len++;
    return 0;
}

/* Remove a level: 1 if it was there, 0 if not. */
static int
side_del(Side *s, double price)
{
    Py_ssize_t found = side_find(s, price);
    if (found < 0)
        return 0;
    size_t mask = (size_t)s->cap - 1, i = (size_t)found, j = i;
    for (;;) { /* backward shift: move later slots of the run into the hole when they may */
        j = (j + 1) & mask;
        if (s->slots[j].amount == 0.0)
            break;
        size_t home = slot_of(s->slots[j].price, mask);
        /* the entry at j may fill the hole at i unless its home lies cyclically in (i, j] */
        int home_in_between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!home_in_between) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].amount = 0.0;
    s->len--;
    return 1;
}

static void
side_clear(Side *s)
{
    PyMem_Free(s->slots);
    s->slots = NULL;
    s->cap = s->len = 0;
}

/* The best price (-inf/+inf when empty): one pass over the slots. */
static double
side_best(const Side *s, int is_bid)
{
    double best = is_bid ? -INFINITY : INFINITY;
    for (Py_ssize_t i = 0; i < s->cap; i++) {
        const Slot *slot = &s->slots[i];
        if (slot->amount != 0.0 && (is_bid ? slot->price > best : slot->price < best))
            best = slot->price;
    }
    return best;
}

static PyObject *
side_to_dict(const Side *s)
{
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < s->cap; i++) {
        const Slot *slot = &s->slots[i];
        if (slot->amount == 0.0)
            continue;
        PyObject *p = PyFloat_FromDouble(slot->price);
        PyObject *a = PyFloat_FromDouble(slot->amount);
        int err = p == NULL || a == NULL || PyDict_SetItem(dict, p, a) < 0;
        Py_XDECREF(p);
        Py_XDECREF(a);
        if (err) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* A side from a dict price -> amount (zero amounts are not levels); *out only on success. */
static int
side_from_dict(PyObject *dict, Side *out, const char *name)
{
    if (dict == NULL) {
        PyErr_Format(PyExc_TypeError, "OrderBook.%s cannot be deleted", name);
        return -1;
    }
    if (!PyDict_Check(dict)) {
        PyErr_Format(PyExc_TypeError, "OrderBook.%s must be a dict price -> amount, not %.100s",
                     name, Py_TYPE(dict)->tp_name);
        return -1;
    }
    Side s = {NULL, 0, 0};
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
    while (PyDict_Next(dict, &pos, &k, &v)) { /* exact floats/ints only: no Python code runs */
        double p, a;
        if (price_value(k, &p, i) < 0 || number_value(v, &a, "amount", i) < 0 ||
            (a != 0.0 && side_set(&s, p, a) < 0)) {
            side_clear(&s);
            return -1;
        }
        i++;
    }
    *out = s;
    return 0;
}

/* -- BookCore ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    Side bids, asks;
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
    self->top = none_top();
    if (self->top == NULL) {
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
    side_clear(&self->bids);
    side_clear(&self->asks);
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

/* Levels into one side; ``*best`` follows them; ``*touched`` when a level at or better than
 * the best changed or the best was deleted. Cannot fail but for memory. */
static int
apply_side(Side *side, const Levels *L, int is_bid, double *best_io, int *touched)
{
    double best = *best_io;
    int lost = 0;
    for (Py_ssize_t i = 0; i < L->n; i++) {
        const Level *lv = &L->items[i];
        if (lv->a != 0.0) {
            if (side_set(side, lv->p, lv->a) < 0)
                return -1;
            if (is_bid ? lv->p >= best : lv->p <= best) {
                best = lv->p;
                *touched = 1;
            }
        }
        else if (side_del(side, lv->p) && lv->p == best)
            lost = 1;
    }
    if (lost) {
        *touched = 1;
        best = side_best(side, is_bid);
    }
    *best_io = best;
    return 0;
}

/* Is the old top entry (a float or None) the same as the new one? */
static int
same_entry(PyObject *old, int has, double now)
{
    if (!has)
        return old == Py_None;
    if (old == NULL || old == Py_None)
        return 0;
    if (PyFloat_CheckExact(old))
        return PyFloat_AS_DOUBLE(old) == now;
    return 0; /* something else was put there: replace it */
}

static PyObject *
entry(int has, double value)
{
    return has ? PyFloat_FromDouble(value) : Py_NewRef(Py_None);
}

/* The cached best price is not a level (Python code set ``_best_bid``/``_best_ask`` or a side
 * without the other): a KeyError naming it, as the pure-Python twin's dict lookup raises. */
static int
missing_best(const char *side, double price)
{
    char *text = PyOS_double_to_string(price, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return -1;
    PyErr_Format(PyExc_KeyError, "best %s %s is not a level of the book", side, text);
    PyMem_Free(text);
    return -1;
}

/* Recompute the cached top of book from the sides: 1 if it changed, 0 if not, -1 on error. */
static int
book_top_changed(BookCore *self)
{
    int has_b = self->bids.len > 0, has_a = self->asks.len > 0;
    double bb = self->best_bid, ba = self->best_ask, bba = 0.0, baa = 0.0;
    if (has_b) {
        Py_ssize_t i = side_find(&self->bids, bb);
        if (i < 0) {
            return missing_best("bid", bb);
        }
        bba = self->bids.slots[i].amount;
    }
    if (has_a) {
        Py_ssize_t i = side_find(&self->asks, ba);
        if (i < 0) {
            return missing_best("ask", ba);
        }
        baa = self->asks.slots[i].amount;
    }
    PyObject *old = self->top;
    if (old != NULL && PyTuple_CheckExact(old) && PyTuple_GET_SIZE(old) == 4 &&
        same_entry(PyTuple_GET_ITEM(old, 0), has_b, bb) &&
        same_entry(PyTuple_GET_ITEM(old, 1), has_b, bba) &&
        same_entry(PyTuple_GET_ITEM(old, 2), has_a, ba) &&
        same_entry(PyTuple_GET_ITEM(old, 3), has_a, baa))
        return 0;
    PyObject *top = PyTuple_New(4);
    if (top == NULL)
        return -1;
    PyObject *items[4] = {entry(has_b, bb), entry(has_b, bba), entry(has_a, ba), entry(has_a, baa)};
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        if (items[i] == NULL)
            failed = 1;
        PyTuple_SET_ITEM(top, i, items[i]); /* NULL items are fine for the DECREF below */
    }
    if (failed) {
        Py_DECREF(top);
        return -1;
    }
    Py_XSETREF(self->top, top);
    return 1;
}

/* One delta: the outcome (APPLIED ... CROSSED) or -1 on error. The levels were all checked
 * before (levels_load) and no Python code runs while the sides change. */
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
    int touched = 0;
    if (bids->n && apply_side(&self->bids, bids, 1, &self->best_bid, &touched) < 0)
        return -1;
    if (asks->n && apply_side(&self->asks, asks, 0, &self->best_ask, &touched) < 0)
        return -1;
    self->last_seq = seq;
    Py_XSETREF(self->timestamp_us, Py_NewRef(timestamp_us));
    if (!touched)
        return APPLIED;
    if (self->best_bid >= self->best_ask) {
        if (set_long(&self->received_seq, seq) < 0)
            return -1;
        Py_XSETREF(self->expected_seq, Py_NewRef(Py_None));
        self->crossed_count++;
        self->state = ST_RESYNCING;
        return CROSSED;
    }
    int changed = book_top_changed(self);
    if (changed < 0)
        return -1;
    return changed ? APPLIED_TOP : APPLIED;
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

static PyObject *
BookCore_side_sizes(BookCore *self, PyObject *unused)
{
    return Py_BuildValue("(nn)", self->bids.len, self->asks.len);
}

static PyMethodDef BookCore_methods[] = {
    {"apply_delta", (PyCFunction)(void (*)(void))BookCore_apply_delta, METH_FASTCALL,
     "apply_delta(bids, asks, seq, prev_seq, timestamp_us=None) -> outcome\n\n"
     "Apply one delta (absolute amounts, 0 deletes); returns an outcome constant."},
    {"top_changed", (PyCFunction)BookCore_top_changed, METH_NOARGS,
     "Recompute the cached top of book; True if it differs from the cached one."},
    {"side_sizes", (PyCFunction)BookCore_side_sizes, METH_NOARGS,
     "(number of bid levels, number of ask levels), without copying the sides."},
    {NULL},
};

static PyObject *
BookCore_get_side(BookCore *self, void *is_bid)
{
    return side_to_dict(is_bid ? &self->bids : &self->asks);
}

static int
BookCore_set_side(BookCore *self, PyObject *value, void *is_bid)
{
    Side side;
    if (side_from_dict(value, &side, is_bid ? "bids" : "asks") < 0)
        return -1;
    Side *target = is_bid ? &self->bids : &self->asks;
    side_clear(target);
    *target = side;
    return 0;
}

static PyGetSetDef BookCore_getset[] = {
    {"bids", (getter)BookCore_get_side, (setter)BookCore_set_side,
     "the bids as a new dict price -> amount (a copy: assign a dict to replace the side)",
     (void *)1},
    {"asks", (getter)BookCore_get_side, (setter)BookCore_set_side,
     "the asks as a new dict price -> amount (a copy: assign a dict to replace the side)", NULL},
    {NULL},
};

static PyMemberDef BookCore_members[] = {
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
    .tp_doc = "The C core of an order book (state, sides as hash tables of doubles, "
              "apply_delta); see book.py.",
    .tp_basicsize = sizeof(BookCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = BookCore_new,
    .tp_traverse = (traverseproc)BookCore_traverse,
    .tp_clear = (inquiry)BookCore_clear,
    .tp_dealloc = (destructor)BookCore_dealloc,
    .tp_methods = BookCore_methods,
    .tp_members = BookCore_members,
    .tp_getset = BookCore_getset,
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
