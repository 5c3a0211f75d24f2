// SPDX-License-Identifier: GPL-2.0
/*
 * icount: a QEMU (7.2) TCG plugin that counts the guest instructions
 * executed, per vCPU, so that a benchmark can measure work rather than
 * time.
 *
 *   -plugin out/bin/icount.so,ranges=FILE,out=FILE
 *
 * Counted: instructions in kernel mode (the translation block starts in the
 * kernel half of the address space), in user mode, and inside labelled
 * address ranges. The ranges file has one range a line, "START END LABEL"
 * (hex; END exclusive, or "+SIZE"; START may be "BASE+OFFSET"); '#' starts a
 * comment; ranges must not overlap; at most 1024 labels. It is read at
 * start-up if it exists and re-read at every marker if its contents
 * changed, so that a guest can add the range of a module it has just
 * loaded (a changed file re-labels translation blocks lazily, the next
 * time each runs).
 *
 * The marker: a user program executes "xchg %bx,%bx" (66 87 db, a no-op).
 * Each time one runs, the plugin writes one line to the out file (or
 * QEMU's log, i.e. stderr, without out=):
 *
 *   mark SEQ vcpu V kernel N user N LABEL N ...
 *
 * with the totals so far, summed over the vCPUs; differences between two
 * marks are the instructions of what ran between them. At exit it writes
 * the same with "end" instead of "mark".
 *
 * Counts are exact per translation block as executed (a block left early
 * by an exception still counts whole). QEMU 7.2's x86 translator ends a
 * block before an instruction that is not its first and does not lie
 * wholly in the block's first page, but the plugin interface has already
 * listed that instruction in the block, so it would be counted twice: in
 * that block and in the next, which starts with it. Such blocks are
 * counted without it (see struct cutwatch). Each vCPU has its own counters,
 * written only by its own thread under multi-threaded TCG, so the counts
 * have no lost updates; a mark sums them while the other vCPUs run, so what
 * those vCPUs do concurrently with the mark falls on either side of it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-plugin-min.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define KERNEL_HALF	0xffff800000000000ULL
#define MAX_LABELS	1024
#define LABEL_LEN	256

static const unsigned char marker[3] = { 0x66, 0x87, 0xdb };

struct range {
	uint64_t start, end;
	unsigned int label;
};

/* One version of the ranges, immutable once published. */
struct rtab {
	unsigned int gen;
	size_t n;
	struct range r[];
};

/* The counters of one vCPU, on cache lines of their own. */
struct vcount {
	uint64_t kernel, user;
	uint64_t lab[MAX_LABELS];
} __attribute__((aligned(64)));

/* A translation block's instructions per label, for one ranges version. */
struct tblabs {
	unsigned int gen;
	unsigned int n;
	struct {
		unsigned int label;
		unsigned int n;
	} it[];
};

/* A kernel translation block: where its instructions are. */
struct tbrec {
	uint64_t vaddr;
	struct tblabs *labs;
	unsigned int n;		/* counted: n_full, or n_full - 1 if cut */
	unsigned int n_full;	/* listed by the plugin interface */
	unsigned int watched;	/* whether its last insn may yet be cut */
	uint64_t early;		/* runs counted with n_full while watched */
	int cut_label;		/* the label of the cut insn when found cut */
	struct tbrec *next_cut;
	uint32_t off[];
};

/* A user translation block whose count may still lose its last insn. */
struct urec {
	unsigned int n, n_full;
	unsigned int watched;	/* whether its last insn may yet be cut */
	uint64_t early;		/* runs counted with n_full while watched */
	struct urec *next_cut;
};

#define PAGE_SIZE_X86	4096ULL
#define PAGE_OF(a)	((a) & ~(PAGE_SIZE_X86 - 1))
#define MAX_INSN_LEN	15
#define CUT_BUCKETS	4096

/*
 * A block whose last instruction x starts within MAX_INSN_LEN bytes of the
 * end of the block's first page: whether the translator cut x (its full
 * length reaching another page) is known only from a block that starts
 * with x, whose first instruction has its full length. Until then the
 * block is counted with x.
 */
struct cutwatch {
	uint64_t x, page;
	struct tbrec *krec;	/* a kernel block, or */
	struct urec *urec;	/* a user block */
	struct cutwatch *next;
};

/* The length of an instruction that starts a block, near a page's end. */
struct insnlen {
	uint64_t x;
	unsigned int len;
	struct insnlen *next;
};

static pthread_mutex_t cutlock = PTHREAD_MUTEX_INITIALIZER;
static struct cutwatch *watches[CUT_BUCKETS];
static struct insnlen *lens[CUT_BUCKETS];
/*
 * Blocks found cut after they ran: each run before that counted the cut
 * insn once too often, which report() takes off the totals.
 */
static struct tbrec *cut_krecs;
static struct urec *cut_urecs;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct vcount *counts;
static unsigned int nvcpus;
static char labels[MAX_LABELS][LABEL_LEN];
static unsigned int nlabels;
static struct rtab *ranges;		/* published with release stores */
static unsigned int ranges_gen;
static char *ranges_path, *ranges_text;
static FILE *out;
static uint64_t seq;

static void say(const char *fmt, const char *arg)
{
	char buf[512];

	snprintf(buf, sizeof(buf), fmt, arg);
	qemu_plugin_outs(buf);
}

/* Under lock. */
static int label_id(const char *name)
{
	unsigned int i;
	size_t len;

	for (i = 0; i < nlabels; i++)
		if (!strcmp(labels[i], name))
			return i;
	len = strlen(name);
	if (nlabels == MAX_LABELS || len >= LABEL_LEN)
		return -1;
	memcpy(labels[nlabels], name, len + 1);
	return nlabels++;
}

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t len = 0, cap = 4096, got;
	char *buf;

	if (!f)
		return NULL;
	buf = malloc(cap + 1);
	while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
		len += got;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
	}
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* Under lock: parse TEXT into a new ranges version and publish it. */
static void ranges_parse(char *text)
{
	size_t cap = 64, n = 0;
	struct rtab *t = malloc(sizeof(*t) + cap * sizeof(t->r[0]));
	char *line, *save = NULL;

	if (!t)
		return;
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char s[64], e[32], name[LABEL_LEN];
		char *rest;
		uint64_t start, end;
		int id;

		if (line[0] == '#' ||
		    sscanf(line, "%63s %31s %255s", s, e, name) != 3)
			continue;
		start = strtoull(s, &rest, 16);
		if (*rest == '+')
			start += strtoull(rest + 1, NULL, 16);
		end = e[0] == '+' ? start + strtoull(e + 1, NULL, 16) :
				    strtoull(e, NULL, 16);
		id = label_id(name);
		if (id < 0 || end <= start) {
			say("icount: range ignored: %s\n", line);
			continue;
		}
		if (n == cap) {
			cap *= 2;
			t = realloc(t, sizeof(*t) + cap * sizeof(t->r[0]));
			if (!t)
				return;
		}
		t->r[n].start = start;
		t->r[n].end = end;
		t->r[n].label = id;
		n++;
	}
	qsort(t->r, n, sizeof(t->r[0]), range_cmp);
	t->n = n;
	t->gen = ++ranges_gen;
	__atomic_store_n(&ranges, t, __ATOMIC_RELEASE);
	/* The old version may still be read by a vCPU: it is never freed. */
}

/* Under lock: re-read the ranges file if its contents changed. */
static void ranges_reload(void)
{
	char *text, *copy;

	if (!ranges_path)
		return;
	text = slurp(ranges_path);
	if (!text)
		return;
	if (ranges_text && !strcmp(text, ranges_text)) {
		free(text);
		return;
	}
	copy = strdup(text);
	if (!copy) {
		free(text);
		return;
	}
	free(ranges_text);
	ranges_text = text;
	ranges_parse(copy);
	free(copy);
}

static int range_find(const struct rtab *t, uint64_t addr)
{
	size_t lo = 0, hi = t->n;

	/* The last range that starts at or below addr. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->r[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || addr >= t->r[lo - 1].end)
		return -1;
	return t->r[lo - 1].label;
}

/* A block's instructions per label under the current ranges. */
static struct tblabs *tb_labels(const struct tbrec *rec)
{
	const struct rtab *t = __atomic_load_n(&ranges, __ATOMIC_ACQUIRE);
	struct tblabs *l = malloc(sizeof(*l) + rec->n * sizeof(l->it[0]));
	unsigned int i, k, used = 0;

	if (!l)
		abort();
	/* A block spans few labels: a linear search of those seen is enough. */
	for (i = 0; t && i < rec->n; i++) {
		int id = range_find(t, rec->vaddr + rec->off[i]);

		if (id < 0)
			continue;
		for (k = 0; k < used && l->it[k].label != (unsigned int)id; k++)
			;
		if (k == used) {
			l->it[used].label = id;
			l->it[used++].n = 0;
		}
		l->it[k].n++;
	}
	l->gen = t ? t->gen : 0;
	l->n = used;
	return l;
}

/* Only the vCPU's own thread writes its counters; marks read them. */
static inline void bump(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

static void tb_kernel_exec(unsigned int vcpu, void *udata)
{
	struct tbrec *rec = udata;
	const struct rtab *t = __atomic_load_n(&ranges, __ATOMIC_ACQUIRE);
	unsigned int n = __atomic_load_n(&rec->n, __ATOMIC_RELAXED);
	struct tblabs *l = __atomic_load_n(&rec->labs, __ATOMIC_ACQUIRE);
	struct vcount *c;
	unsigned int i;

	if (vcpu >= nvcpus)
		return;
	c = &counts[vcpu];
	bump(&c->kernel, n);
	if (__atomic_load_n(&rec->watched, __ATOMIC_RELAXED) && n == rec->n_full)
		__atomic_fetch_add(&rec->early, 1, __ATOMIC_RELAXED);
	if (t && l->gen != t->gen) {
		/* Two vCPUs may both redo it: the loser's copy leaks. */
		l = tb_labels(rec);
		__atomic_store_n(&rec->labs, l, __ATOMIC_RELEASE);
	}
	for (i = 0; i < l->n; i++)
		bump(&c->lab[l->it[i].label], l->it[i].n);
}

static void tb_user_exec(unsigned int vcpu, void *udata)
{
	if (vcpu < nvcpus)
		bump(&counts[vcpu].user, (uintptr_t)udata);
}

static void tb_user_exec_rec(unsigned int vcpu, void *udata)
{
	struct urec *rec = udata;
	unsigned int n = __atomic_load_n(&rec->n, __ATOMIC_RELAXED);

	if (vcpu >= nvcpus)
		return;
	bump(&counts[vcpu].user, n);
	if (__atomic_load_n(&rec->watched, __ATOMIC_RELAXED) && n == rec->n_full)
		__atomic_fetch_add(&rec->early, 1, __ATOMIC_RELAXED);
}

/* Whether an insn at x may reach past the page the block at va starts in. */
static int near_page_end(uint64_t va, uint64_t x)
{
	uint64_t end = PAGE_OF(va) + PAGE_SIZE_X86;

	return x < end && end - x <= MAX_INSN_LEN;
}

static unsigned int cut_hash(uint64_t x)
{
	return (x ^ (x >> 12)) % CUT_BUCKETS;
}

/* Under cutlock: the recorded length of an insn that starts a block at x. */
static struct insnlen *insnlen_find(uint64_t x)
{
	struct insnlen *l;

	for (l = lens[cut_hash(x)]; l; l = l->next)
		if (l->x == x)
			return l;
	return NULL;
}

/* Under cutlock: count a block without its last instruction, cut. */
static void drop_last(struct tbrec *krec, struct urec *urec)
{
	const struct rtab *t;

	if (urec) {
		__atomic_store_n(&urec->n, urec->n_full - 1, __ATOMIC_RELAXED);
		urec->next_cut = cut_urecs;
		cut_urecs = urec;
		return;
	}
	/*
	 * Its runs so far counted the cut insn in the label its address had
	 * then: report() takes them off that label, not off whatever the
	 * address falls in after the ranges change (another module loaded
	 * there), which never counted them.
	 */
	t = __atomic_load_n(&ranges, __ATOMIC_ACQUIRE);
	krec->cut_label = t ? range_find(t, krec->vaddr + krec->off[krec->n_full - 1]) : -1;
	__atomic_store_n(&krec->n, krec->n_full - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&krec->labs, tb_labels(krec), __ATOMIC_RELEASE);
	krec->next_cut = cut_krecs;
	cut_krecs = krec;
}

/*
 * Under cutlock: a block starts at x with an instruction of len bytes.
 * Blocks that end with x had it cut if it reaches past their first page.
 */
static void cut_learn(uint64_t x, unsigned int len)
{
	struct cutwatch **pw = &watches[cut_hash(x)], *w;
	struct insnlen *l = insnlen_find(x);

	if (!l) {
		l = malloc(sizeof(*l));
		if (!l)
			abort();
		l->x = x;
		l->len = len;
		l->next = lens[cut_hash(x)];
		lens[cut_hash(x)] = l;
	}
	while ((w = *pw)) {
		if (w->x != x) {
			pw = &w->next;
			continue;
		}
		if (PAGE_OF(x + len - 1) != w->page)
			drop_last(w->krec, w->urec);
		else
			/* Not cut: its runs need counting apart no more. */
			__atomic_store_n(w->urec ? &w->urec->watched : &w->krec->watched, 0,
					 __ATOMIC_RELAXED);
		*pw = w->next;
		free(w);
	}
}

/*
 * Under cutlock: a block of n >= 2 instructions from va ends with one at
 * x. Returns 1 if x was cut (count n - 1), 0 if not or not known yet, in
 * which case the block is watched.
 */
static int cut_check(uint64_t va, uint64_t x, struct tbrec *krec,
		     struct urec *urec)
{
	uint64_t page = PAGE_OF(va);
	struct cutwatch *w;
	struct insnlen *l;

	if (x >= page + PAGE_SIZE_X86)
		return 1;
	if (!near_page_end(va, x))
		return 0;
	l = insnlen_find(x);
	if (l)
		return PAGE_OF(x + l->len - 1) != page;
	w = malloc(sizeof(*w));
	if (!w)
		abort();
	w->x = x;
	w->page = page;
	w->krec = krec;
	w->urec = urec;
	w->next = watches[cut_hash(x)];
	watches[cut_hash(x)] = w;
	return 0;
}

/* Under lock: HEAD and the totals over every vCPU, as one line. */
static void report(const char *head)
{
	static uint64_t lab[MAX_LABELS];
	size_t size = 256 + nlabels * (LABEL_LEN + 24), len;
	char *line = malloc(size);
	uint64_t kernel = 0, user = 0;
	unsigned int v, i;

	if (!line)
		return;
	memset(lab, 0, sizeof(lab));
	for (v = 0; v < nvcpus; v++) {
		kernel += __atomic_load_n(&counts[v].kernel, __ATOMIC_RELAXED);
		user += __atomic_load_n(&counts[v].user, __ATOMIC_RELAXED);
		for (i = 0; i < nlabels; i++)
			lab[i] += __atomic_load_n(&counts[v].lab[i],
						  __ATOMIC_RELAXED);
	}
	/* Runs of blocks before they were found cut (see cut_krecs). */
	pthread_mutex_lock(&cutlock);
	{
		struct tbrec *k;
		struct urec *u;

		for (k = cut_krecs; k; k = k->next_cut) {
			uint64_t e = __atomic_load_n(&k->early, __ATOMIC_RELAXED);

			kernel -= e;
			if (k->cut_label >= 0)
				lab[k->cut_label] -= e;
		}
		for (u = cut_urecs; u; u = u->next_cut)
			user -= __atomic_load_n(&u->early, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&cutlock);
	/* Fits: each label adds at most LABEL_LEN + 22 characters. */
	len = snprintf(line, size, "%s kernel %llu user %llu", head,
		       (unsigned long long)kernel, (unsigned long long)user);
	for (i = 0; i < nlabels; i++)
		len += snprintf(line + len, size - len, " %s %llu",
				labels[i], (unsigned long long)lab[i]);
	snprintf(line + len, size - len, "\n");
	if (out) {
		fputs(line, out);
		fflush(out);
	} else {
		qemu_plugin_outs(line);
	}
	free(line);
}

static void marker_exec(unsigned int vcpu, void *udata)
{
	char head[64];

	(void)udata;
	pthread_mutex_lock(&lock);
	ranges_reload();
	seq++;
	snprintf(head, sizeof(head), "mark %llu vcpu %u",
		 (unsigned long long)seq, vcpu);
	report(head);
	pthread_mutex_unlock(&lock);
}

/* A block's last insn, if it has two or more: only there can one be cut. */
static uint64_t tb_last(struct qemu_plugin_tb *tb, size_t n)
{
	return n < 2 ? 0 : qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, n - 1));
}

/*
 * Under cutlock: learn the length of the block's first instruction if it
 * starts near a page's end, and whether the block's last one was cut.
 * Returns 1 if it was, 2 if that is not known yet (the block must be
 * counted through a record that cut_learn() can change), else 0.
 */
static int tb_cut(struct qemu_plugin_tb *tb, size_t n, uint64_t va,
		  struct tbrec *krec, struct urec *urec)
{
	uint64_t x;

	if (near_page_end(va, va))
		cut_learn(va, qemu_plugin_insn_size(qemu_plugin_tb_get_insn(tb, 0)));
	if (n < 2)
		return 0;
	x = tb_last(tb, n);
	if (cut_check(va, x, krec, urec))
		return 1;
	return near_page_end(va, x) ? 2 : 0;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb), i;
	uint64_t va = qemu_plugin_tb_vaddr(tb);
	struct tbrec *rec;
	struct urec *urec;
	int cut;

	(void)id;
	if (va < KERNEL_HALF) {
		/* A record only for a block that may be found cut later. */
		urec = NULL;
		if (n >= 2 && near_page_end(va, tb_last(tb, n))) {
			urec = malloc(sizeof(*urec));
			if (!urec)
				abort();
			urec->n = n;
			urec->n_full = n;
			urec->watched = 1;
			urec->early = 0;
			urec->next_cut = NULL;
		}
		pthread_mutex_lock(&cutlock);
		cut = tb_cut(tb, n, va, NULL, urec);
		pthread_mutex_unlock(&cutlock);
		if (cut == 2) {
			qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_user_exec_rec,
							     QEMU_PLUGIN_CB_NO_REGS,
							     urec);
		} else {
			free(urec);
			qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_user_exec,
							     QEMU_PLUGIN_CB_NO_REGS,
							     (void *)(uintptr_t)(n - cut));
		}
		for (i = 0; i < n; i++) {
			struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);

			if (qemu_plugin_insn_size(insn) == sizeof(marker) &&
			    !memcmp(qemu_plugin_insn_data(insn), marker,
				    sizeof(marker)))
				qemu_plugin_register_vcpu_insn_exec_cb(insn,
						marker_exec,
						QEMU_PLUGIN_CB_NO_REGS, NULL);
		}
		return;
	}
	rec = malloc(sizeof(*rec) + n * sizeof(rec->off[0]));
	if (!rec)
		abort();
	rec->vaddr = va;
	rec->n = n;
	rec->n_full = n;
	rec->early = 0;
	rec->cut_label = -1;
	rec->next_cut = NULL;
	for (i = 0; i < n; i++)
		rec->off[i] = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i)) - va;
	pthread_mutex_lock(&cutlock);
	cut = tb_cut(tb, n, va, rec, NULL);
	if (cut == 1)
		rec->n = n - 1;
	rec->watched = cut == 2;
	rec->labs = tb_labels(rec);
	pthread_mutex_unlock(&cutlock);
	qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_kernel_exec,
					     QEMU_PLUGIN_CB_NO_REGS, rec);
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
	char head[32];

	(void)id;
	(void)udata;
	pthread_mutex_lock(&lock);
	snprintf(head, sizeof(head), "end %llu", (unsigned long long)seq);
	report(head);
	if (out)
		fclose(out);
	out = NULL;
	pthread_mutex_unlock(&lock);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
					   const qemu_info_t *info,
					   int argc, char **argv)
{
	int i;

	if (!info->system_emulation) {
		qemu_plugin_outs("icount: system emulation only\n");
		return -1;
	}
	nvcpus = info->system.max_vcpus > 0 ? info->system.max_vcpus : 1;
	counts = aligned_alloc(64, nvcpus * sizeof(*counts));
	if (!counts)
		return -1;
	memset(counts, 0, nvcpus * sizeof(*counts));
	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "ranges=", 7)) {
			ranges_path = strdup(argv[i] + 7);
		} else if (!strncmp(argv[i], "out=", 4)) {
			out = fopen(argv[i] + 4, "w");
			if (!out) {
				say("icount: cannot open %s\n", argv[i] + 4);
				return -1;
			}
		} else {
			say("icount: unknown argument %s\n", argv[i]);
			return -1;
		}
	}
	pthread_mutex_lock(&lock);
	ranges_reload();
	pthread_mutex_unlock(&lock);
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
