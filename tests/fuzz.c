// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz: a seeded differential fuzzer of the on-demand protocol (issue 12).
 *
 * For one seed it plays one deterministic trace of protocol actions against
 * whichever backend the next "bind ondemand" picks, acting as the daemon and
 * as the readers: devnode read() with random buffer sizes (too small,
 * unmapped, NULL), copen well-formed and malformed, restore, misplaced
 * commands, writes at random offsets and lengths on the anonymous fds, lseek
 * of every whence, READ_COMPLETE with right, wrong and stale ids, fds closed
 * early, readers started and killed, unmount with requests pending, the
 * devnode closed. Every step's result (return value or errno, the message a
 * read returned, each child's exit) is one line of the trace's log, with the
 * kernel's ids renamed in order of appearance (m1, o1, f1...). The same
 * seed played on C and on Rust must give the same log; fuzz.sh compares.
 *
 *   fuzz run SEED COUNT DIR   play seeds SEED..SEED+COUNT-1, logs in DIR/SEED
 *   fuzz cmp DIRA DIRB SEED COUNT [c-rust]
 *                             compare the logs; 0 if all equal (with c-rust,
 *                             DIRA is C's and the divergences below count)
 *   fuzz divergences          the names of the documented divergences
 *
 * Determinism: after every action that can start work in the kernel the
 * fuzzer waits until the guest is quiescent (settle(): nothing runnable but
 * itself, nothing in I/O wait, three samples in a row), so what the next
 * step sees does not depend on timing. Readers check what they read against
 * the tree the images were made from: wrong data in the cache is an exit
 * code in the log.
 */
#include "odtest.h"
#include <ctype.h>
#include <dirent.h>
#include <stdint.h>

#define MNT "/mnt/fz"
#define ANCHOR_MNT "/mnt/fz-anchor"
/* Every mount shares one volume, which the anchor keeps from one trace to
 * the next: a new volume costs 256 fan-out directory lookups, seconds
 * under KASAN and TCG. */
#define DOMAIN "domain_id=fz"
#define MAX_STEPS 56
#define MAX_REQS 128
#define MAX_OBJS 16
#define MAX_KIDS 16
#define MAX_MAP 256
#define LIVE_READERS 4

/* Errno names the comparator may see; anything else prints as a number. */
static const char *ename(int e)
{
	const char *n = e > 0 ? strerrorname_np(e) : NULL;
	static char buf[16];

	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* --- the trace's random numbers ------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned int rnd(unsigned int n)
{
	return n ? rnd64() % n : 0;
}

static int chance(unsigned int pct)
{
	return rnd(100) < pct;
}

/* --- the log ---------------------------------------------------------------- */

static FILE *logf;
static int step;
static long trace_t0;
static int timing;	/* FUZZ_TIMING set: each line's time on stderr */
static long settle_ms, settles, lines;
/* Killed mounts that completed anyway and were unmounted (reap()). */
static long killed_mounted;
/* FUZZ_ZERO_SIZE=1: some copens answer size 0 (see copen_answer()). */
static int zero_size;

static void logline(const char *fmt, ...)
{
	va_list ap;

	if (timing > 1) {
		fprintf(stderr, "%6ld ms: %d ", now_ms() - trace_t0, step);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	lines++;
	fprintf(logf, "%d ", step);
	va_start(ap, fmt);
	vfprintf(logf, fmt, ap);
	va_end(ap);
	fputc('\n', logf);
	fflush(logf);
}

/* Kernel numbers renamed in order of first appearance: m1, o1, f1... */
struct namemap {
	char tag;
	unsigned int n;
	long long val[MAX_MAP];
	char names[MAX_MAP][16];
};

static struct namemap msgs = { .tag = 'm' }, objs = { .tag = 'o' }, fds = { .tag = 'f' };

static const char *nm(struct namemap *m, long long v)
{
	unsigned int i;

	for (i = 0; i < m->n; i++)
		if (m->val[i] == v)
			return m->names[i];
	if (m->n == MAX_MAP)
		return "?";
	m->val[m->n] = v;
	snprintf(m->names[m->n], sizeof(m->names[0]), "%c%u", m->tag, m->n + 1);
	return m->names[m->n++];
}

/* An object id as a message carries it: -1 is that of an object whose fd
 * was released (CACHEFILES_ONDEMAND_ID_CLOSED in the built-in code). */
static const char *oname(unsigned int oid)
{
	return oid == 0xffffffffu ? "closed" : nm(&objs, oid);
}

/* --- what the fuzzer knows of the protocol --------------------------------- */

struct req {
	unsigned int id, oid, op;
	unsigned long long off, len;
	int done;
};

struct obj {
	unsigned int oid;
	int fd;		/* the anonymous fd, -1 once closed */
	int blob;	/* the blob it serves, -1 if unknown */
	long long size;
	char key[64];
};

enum kid_kind { KID_MOUNT, KID_READER };

struct kid {
	pid_t pid;
	enum kid_kind kind;
	int exited, status;
	char name[16];
};

static struct {
	int dev;
	int mounted;
	struct req reqs[MAX_REQS];
	int nreqs;
	struct obj objs[MAX_OBJS];
	int nobjs;
	struct kid kids[MAX_KIDS];
	int nkids, readers;
	unsigned int last_done_read;	/* a completed READ's id, for stale ids */
} st;

static void *unmapped;
/* The images and the tree they were made from (FUZZ_DATA: a copy in the
 * guest's memory is much faster than the host's share). */
static const char *data_dir = "/host/out/data";
static char msgbuf[CACHEFILES_MSG_MAX_SIZE + 4096] __attribute__((aligned(4096)));

static const char *const files[] = {
	"small/s0.bin", "small/s1.bin", "small/s2.bin", "small/s4.bin",
	"small/s8.bin", "mid/m0.bin", "mid/m1.bin", "mid/m2.bin", "mid/m3.bin",
	"mid/m4.bin", "big/one.bin", "big/two.bin", "a/b/c/d/deep.bin",
	"many/f000.txt", "many/f017.txt", "many/f039.txt",
};

/* --- settling ---------------------------------------------------------------- */

/* Runnable tasks (this one included) from /proc/loadavg. */
static int nr_running(void)
{
	char buf[128];
	int a = -1, b;

	if (read_small("/proc/loadavg", buf, sizeof(buf)))
		sscanf(buf, "%*s %*s %*s %d/%d", &a, &b);
	return a;
}

/* Tasks in I/O wait, from /proc/stat. */
static int procs_blocked(void)
{
	static char buf[8192];
	char *p;

	if (!read_small("/proc/stat", buf, sizeof(buf)))
		return -1;
	p = strstr(buf, "procs_blocked ");
	return p ? atoi(p + 14) : -1;
}

/* On stderr: every task but this one that is runnable or in D state, with
 * where it waits and its kernel stack: why the guest did not settle. */
static void dump_busy(unsigned long long seed)
{
	DIR *procs = opendir("/proc");
	struct dirent *p;

	fprintf(stderr, "seed %llu step %d: not settled after 20 s; busy tasks:\n", seed, step);
	while (procs && (p = readdir(procs))) {
		char path[300], buf[512], wchan[128] = "", *c;

		if (p->d_name[0] < '0' || p->d_name[0] > '9' || atoi(p->d_name) == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", p->d_name);
		if (!read_small(path, buf, sizeof(buf)) || !(c = strrchr(buf, ')')) ||
		    (c[2] != 'R' && c[2] != 'D'))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/wchan", p->d_name);
		read_small(path, wchan, sizeof(wchan));
		fprintf(stderr, "  %.*s) %c wchan=%s\n", (int)(c - buf), buf, c[2], wchan);
		snprintf(path, sizeof(path), "/proc/%s/stack", p->d_name);
		if (read_small(path, buf, sizeof(buf)))
			fprintf(stderr, "%s", buf);
	}
	if (procs)
		closedir(procs);
}

static unsigned long long cur_seed;

/* A child that is runnable, or woken and not yet on a runqueue ('R'). */
static int kid_running(void)
{
	for (int i = 0; i < st.nkids; i++) {
		char path[64], buf[512], *p;

		if (st.kids[i].exited)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)st.kids[i].pid);
		if (read_small(path, buf, sizeof(buf)) && (p = strrchr(buf, ')')) &&
		    p[1] == ' ' && p[2] == 'R')
			return 1;
	}
	return 0;
}

/* Whether a file system is mounted on MNT (not /mnt's own). */
static int mnt_busy(void)
{
	struct stat a, b;

	return !stat(MNT, &a) && !stat(MNT "/..", &b) && a.st_dev != b.st_dev;
}

/*
 * Reaps the children that ended. Returns how many killed mounts it found
 * mounted anyway: a SIGKILL does not stop a mount whose reads all come
 * from the cache file (the data is there from an earlier object's writes)
 * if each read completes before the task waits killably for its page, so
 * whether the kill won depends on the backing disk's timing, not on the
 * backend. Such a mount is unmounted at once, which leaves the state a
 * failed mount leaves (its object withdrawn, its CLOSE queued), and logs
 * nothing: on either backend the trace reads as if the kill had won.
 */
static int reap(void)
{
	int undone = 0;

	for (int i = 0; i < st.nkids; i++) {
		struct kid *k = &st.kids[i];
		int status;

		if (k->exited || waitpid(k->pid, &status, WNOHANG) != k->pid)
			continue;
		k->exited = 1;
		k->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (k->kind != KID_MOUNT) {
			st.readers--;
			continue;
		}
		st.mounted = k->status == 0;
		if (!st.mounted && mnt_busy()) {
			if (umount2(MNT, 0))
				umount2(MNT, MNT_DETACH);
			undone++;
			killed_mounted++;
		}
	}
	return undone;
}

/*
 * Wait until the guest is quiescent, then log the children that ended and
 * whether the devnode is readable. Returns 0, or -1 if it never settled in
 * 20 s (a hang, which the log shows).
 */
static int settle(void)
{
	long end = now_ms() + 20000;
	int quiet = 0, ret = -1;
	char line[512];
	size_t o;

	int samples = 0, busy = 0, blocked = 0;
	long t0 = now_ms();

	/*
	 * Quiet: nothing runnable but this task (/proc/loadavg), none of its
	 * children runnable or woken (a wake-up from the other CPU is queued
	 * there before it counts as runnable), nothing in I/O wait
	 * (/proc/stat, read only then: it is the costly one), twice in a row
	 * a millisecond apart (5 ms once the wait is longer). A task can
	 * stay in I/O wait on a page that a reader waiting for the daemon
	 * holds: the same count of them for 100 ms counts as quiet too.
	 */
	int last_b = -1;
	long b_since = 0;

again:
	while (now_ms() < end) {
		int r, b = -1;

		if (reap())
			quiet = 0;	/* the unmount queued a withdrawal */
		r = nr_running();
		if (r == 1 && !kid_running())
			b = procs_blocked();
		samples++;
		busy += b < 0;
		blocked += b > 0;
		/* A sample with something runnable (b < 0) says nothing of
		 * the tasks in I/O wait: only a new count restarts their clock. */
		if (b > 0 && b != last_b)
			b_since = now_ms();
		if (b >= 0)
			last_b = b;
		if (b == 0 || (b > 0 && now_ms() - b_since >= 100)) {
			if (++quiet == 2) {
				ret = 0;
				break;
			}
		} else {
			quiet = 0;
		}
		/* Polling /proc keeps a vCPU busy, which under TCG takes a
		 * host core from the other guest of make check: after the
		 * first few samples, the guest idles between them. */
		usleep(samples < 4 ? 1000 : 5000);
	}
	/* A child that ended since the last sample: settle its unmount too. */
	if (reap() && !ret) {
		ret = -1;
		quiet = 0;
		goto again;
	}
	settle_ms += now_ms() - t0;
	settles++;
	if (timing > 1)
		fprintf(stderr, "settle: %ld ms, %d samples, %d busy, %d blocked\n",
			now_ms() - t0, samples, busy, blocked);
	if (ret)
		dump_busy(cur_seed);
	o = snprintf(line, sizeof(line), "settle%s poll=%d", ret ? " TIMEOUT" : "",
		     st.dev >= 0 ? dev_pollin(st.dev, 0) : -1);
	for (int i = 0; i < st.nkids; i++) {
		struct kid *k = &st.kids[i];

		if (k->exited == 1 && o < sizeof(line) - 32) {
			o += snprintf(line + o, sizeof(line) - o, " %s=%d", k->name, k->status);
			k->exited = 2;	/* logged */
		}
	}
	logline("%s", line);
	return ret;
}

/* --- children ----------------------------------------------------------------- */

static struct kid *new_kid(pid_t pid, enum kid_kind kind)
{
	struct kid *k;

	if (st.nkids == MAX_KIDS || pid < 0)
		return NULL;
	k = &st.kids[st.nkids];
	*k = (struct kid){ .pid = pid, .kind = kind };
	snprintf(k->name, sizeof(k->name), "%c%d", kind == KID_MOUNT ? 'M' : 'r', st.nkids + 1);
	st.nkids++;
	if (kind == KID_READER)
		st.readers++;
	return k;
}

static int mount_live(void)
{
	for (int i = 0; i < st.nkids; i++)
		if (st.kids[i].kind == KID_MOUNT && !st.kids[i].exited)
			return 1;
	return 0;
}

/*
 * A reader: one pread() of len bytes at off, compared with the file the
 * image was made from. Exits 0 if all matched, 200 on a short read, 201 on
 * wrong data, else the errno of open() or pread().
 */
static pid_t start_checked_read(const char *rel, off_t off, size_t len, int random)
{
	pid_t pid = fork();

	if (pid == 0) {
		static char got[1 << 18], want[1 << 18];
		char path[256], ref[256];
		ssize_t n, w;

		close_range(3, ~0U, 0);
		snprintf(path, sizeof(path), MNT "/%s", rel);
		snprintf(ref, sizeof(ref), "%s/tree/%s", data_dir, rel);
		if (len > sizeof(got))
			len = sizeof(got);
		n = od_pread_file(path, got, len, off, random);
		if (n < 0)
			_exit(-n & 0xff);
		w = od_pread_file(ref, want, len, off, 0);
		if (w < 0)
			_exit(199);
		if (n != w)
			_exit(200);
		_exit(memcmp(got, want, n) ? 201 : 0);
	}
	return pid;
}

static void act_mount(void)
{
	/* One blob: two objects withdrawn at once queue their CLOSEs in
	 * either order, which no settling makes deterministic. */
	const char *opts = "fsid=simple.img," DOMAIN;
	struct kid *k = new_kid(start_mount(opts, MNT), KID_MOUNT);

	logline("mount %s => %s", opts, k ? k->name : "no slot");
	settle();
}

static void act_reader(void)
{
	const char *f = files[rnd(sizeof(files) / sizeof(files[0]))];
	static const size_t lens[] = { 1, 100, 4096, 5000, 65536, 200000 };
	static const off_t offs[] = { 0, 1, 4095, 4096, 12288, 70000, 1 << 20 };
	size_t len = lens[rnd(6)];
	off_t off = offs[rnd(7)];
	int random = chance(50);
	struct kid *k = new_kid(start_checked_read(f, off, len, random), KID_READER);

	logline("read %s off=%lld len=%zu%s => %s", f, (long long)off, len,
		random ? " random" : "", k ? k->name : "no slot");
	settle();
}

static void act_kill(void)
{
	int live[MAX_KIDS], n = 0;

	for (int i = 0; i < st.nkids; i++)
		if (!st.kids[i].exited)
			live[n++] = i;
	if (!n)
		return;
	struct kid *k = &st.kids[live[rnd(n)]];

	kill(k->pid, SIGKILL);
	logline("kill %s", k->name);
	settle();
}

/* --- the devnode ------------------------------------------------------------- */

static struct obj *obj_by_oid(unsigned int oid)
{
	for (int i = 0; i < st.nobjs; i++)
		if (st.objs[i].oid == oid)
			return &st.objs[i];
	return NULL;
}

static void note_open(struct cachefiles_msg *m)
{
	struct cachefiles_open *load = (void *)m->data;
	char path[256];
	struct stat sb;
	struct obj *o = obj_by_oid(m->object_id);

	if (!o) {
		if (st.nobjs == MAX_OBJS) {
			close(load->fd);
			return;
		}
		o = &st.objs[st.nobjs++];
	} else {
		if (o->fd >= 0)
			close(o->fd);
		if (o->blob >= 0)
			close(o->blob);
	}
	o->oid = m->object_id;
	o->fd = load->fd;
	open_cookie(m, o->key, sizeof(o->key));
	snprintf(path, sizeof(path), "%s/blobs/%s", data_dir, o->key);
	o->blob = open(path, O_RDONLY | O_CLOEXEC);
	o->size = o->blob >= 0 && !fstat(o->blob, &sb) ? sb.st_size : -1;
}

static void note_req(struct cachefiles_msg *m)
{
	struct req *r;

	if (st.nreqs == MAX_REQS)
		return;
	r = &st.reqs[st.nreqs++];
	*r = (struct req){ .id = m->msg_id, .oid = m->object_id, .op = m->opcode };
	if (m->opcode == CACHEFILES_OP_READ) {
		struct cachefiles_read *rd = (void *)m->data;

		r->off = rd->off;
		r->len = rd->len;
	}
}

/* read() on the devnode into buf (msgbuf, unmapped or NULL) of len bytes. */
static void devread(size_t len, void *buf)
{
	const char *bufname = buf == unmapped ? " unmapped" : !buf ? " NULL" : "";
	ssize_t n = read(st.dev, buf, len);
	struct cachefiles_msg *m = (void *)msgbuf;

	/* Even a read that returns nothing can start work: the built-in code
	 * queues an object's reopen when it passes over its READ. */
	if (n < 0) {
		logline("devread %zu%s => -%s", len, bufname, ename(errno));
		settle();
		return;
	}
	if (n == 0 || buf != msgbuf) {
		logline("devread %zu%s => %zd", len, bufname, n);
		settle();
		return;
	}
	if (m->opcode == CACHEFILES_OP_OPEN) {
		struct cachefiles_open *load = (void *)m->data;
		char ckey[64];
		const char *mid = nm(&msgs, m->msg_id);
		const char *oid = oname(m->object_id);

		logline("devread %zu => %zd OPEN %s %s len=%u vkey=%.*s ckey=%s fd=%s flags=%u",
			len, n, mid, oid, m->len,
			load->volume_key_size ? (int)load->volume_key_size - 1 : 0,
			(char *)load->data, open_cookie(m, ckey, sizeof(ckey)),
			nm(&fds, load->fd), load->flags);
		note_open(m);
	} else if (m->opcode == CACHEFILES_OP_READ) {
		struct cachefiles_read *rd = (void *)m->data;
		const char *mid = nm(&msgs, m->msg_id);

		logline("devread %zu => %zd READ %s %s len=%u off=%llu rlen=%llu", len, n,
			mid, oname(m->object_id), m->len,
			(unsigned long long)rd->off, (unsigned long long)rd->len);
	} else {
		const char *mid = nm(&msgs, m->msg_id);

		logline("devread %zu => %zd %s %s %s len=%u", len, n,
			m->opcode == CACHEFILES_OP_CLOSE ? "CLOSE" : "op?",
			mid, oname(m->object_id), m->len);
	}
	note_req(m);
	/* A CLOSE is done once read: what waited for it goes on. */
	settle();
}

static void act_devread(void)
{
	static const size_t sizes[] = { 0, 1, 15, 16, 40, 60, 64, 256, 4096,
					CACHEFILES_MSG_MAX_SIZE };
	size_t len = sizes[rnd(10)];
	unsigned int how = rnd(100);

	devread(len, how < 8 ? unmapped : how < 12 ? NULL : msgbuf);
}

/* A delivered request of opcode op not yet answered, picked at random. */
static struct req *pick_req(unsigned int op, int undone)
{
	int idx[MAX_REQS], n = 0;

	for (int i = 0; i < st.nreqs; i++)
		if (st.reqs[i].op == op && (!undone || !st.reqs[i].done))
			idx[n++] = i;
	return n ? &st.reqs[idx[rnd(n)]] : NULL;
}

/* Write a command; log it (ids renamed) with its result. */
static void cmd(const char *shown, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n, ret;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ret = dev_cmdn(st.dev, buf, n);
	logline("%s => %s%s", shown, ret ? "-" : "0", ret ? ename(-ret) : "");
}

/*
 * Answer OPEN r: mostly with the blob's size, sometimes a page more or an
 * error. A size short of the blob (0) lets erofs reach its WARN_ON(len == 0)
 * in erofs_fscache_read_io_async() once an unaligned write ends the cache
 * file inside a read (Documentation/tests.md), on either backend: only with
 * FUZZ_ZERO_SIZE=1.
 */
static void copen_answer(struct req *r)
{
	struct obj *o = obj_by_oid(r->oid);
	long long size, blob = o && o->size >= 0 ? o->size : 0;
	unsigned int v = rnd(20);
	char shown[128];

	if (v < 16)
		size = blob;
	else if (v < 17)
		size = zero_size ? 0 : blob + 4096;
	else if (v < 18)
		size = -ENOENT;
	else if (v < 19)
		size = -EIO;
	else
		size = -5000;	/* not an errno */
	r->done = 1;
	snprintf(shown, sizeof(shown), "copen %s,%lld", nm(&msgs, r->id), size);
	cmd(shown, "copen %u,%lld", r->id, size);
	settle();
}

static void act_copen(void)
{
	struct req *r = pick_req(CACHEFILES_OP_OPEN, 1);
	char shown[128];

	if (r && chance(30)) {
		copen_answer(r);
		return;
	}
	r = pick_req(CACHEFILES_OP_OPEN, 0);
	switch (rnd(9)) {
	case 0:
		if (r) {
			snprintf(shown, sizeof(shown), "copen %s (no comma)", nm(&msgs, r->id));
			cmd(shown, "copen %u", r->id);
			break;
		}
		/* fall through */
	case 1:
		cmd("copen (no args)", "copen");
		break;
	case 2:
		cmd("copen 99999999999,1", "copen 99999999999,1");
		break;
	case 3:
		cmd("copen -1,1", "copen -1,1");
		break;
	case 4:
		cmd("copen 4000000,1 (unknown id)", "copen 4000000,1");
		break;
	case 5:
		if (r) {
			snprintf(shown, sizeof(shown), "copen %s,abc", nm(&msgs, r->id));
			cmd(shown, "copen %u,abc", r->id);
			break;
		}
		/* fall through */
	case 6:
		cmd("copen ,", "copen ,");
		break;
	case 7:
		if (r) {
			snprintf(shown, sizeof(shown), "copen %s,99999999999999999999 (huge)",
				 nm(&msgs, r->id));
			cmd(shown, "copen %u,99999999999999999999", r->id);
			break;
		}
		/* fall through */
	default:
		if (r) {
			snprintf(shown, sizeof(shown), "copen %s,4096 (repeated)", nm(&msgs, r->id));
			cmd(shown, "copen %u,4096", r->id);
		} else {
			cmd("copen 1,4096 (nothing delivered)", "copen 1,4096");
		}
		break;
	}
	settle();
}

/* Copy [off, off + len) of the object's blob (zeros past its end) to its fd. */
static ssize_t fill(struct obj *o, unsigned long long off, unsigned long long len)
{
	/* Aligned: the backing file is written with direct I/O. */
	static char buf[1 << 20] __attribute__((aligned(4096)));
	ssize_t r = 0;

	if (len > sizeof(buf))
		len = sizeof(buf);
	memset(buf, 0, len);
	if (o->blob >= 0 && pread(o->blob, buf, len, off) < 0)
		return -errno;
	r = pwrite(o->fd, buf, len, off);
	return r < 0 ? -errno : r;
}

static void log_ret(const char *what, long long r)
{
	if (r < 0)
		logline("%s => -%s", what, ename(-r));
	else
		logline("%s => %lld", what, r);
}

/* READ_COMPLETE on some open fd with a stale or made-up id. */
static void complete_stale(void)
{
	char what[160];
	unsigned long id;
	long ret;

	for (int i = 0; i < st.nobjs; i++) {
		if (st.objs[i].fd < 0)
			continue;
		id = st.last_done_read && chance(60) ? st.last_done_read : 3000000;
		ret = ioctl(st.objs[i].fd, CACHEFILES_IOC_READ_COMPLETE, id);
		snprintf(what, sizeof(what), "complete %s on %s (%s)",
			 id == 3000000 ? "3000000" : nm(&msgs, id),
			 nm(&objs, st.objs[i].oid), id == 3000000 ? "unknown" : "stale");
		log_ret(what, ret < 0 ? -errno : ret);
		if (!ret)
			settle();
		return;
	}
}

/*
 * Answer READ r: its range copied from the blob, then READ_COMPLETE. With
 * chaos, sometimes half the data or none, the id of an OPEN, a wrong id, or
 * another object's fd.
 */
static void complete_read(struct req *r, int chaos)
{
	struct obj *o = obj_by_oid(r->oid), *other = NULL;
	char what[160];
	unsigned long id = r->id;
	int fd;
	long ret;

	if (!o || o->fd < 0) {
		r->done = 1;	/* nobody can answer it now */
		complete_stale();
		return;
	}
	fd = o->fd;
	if (!chaos || chance(85)) {
		unsigned long long len = r->len;
		const char *how = "";

		if (chaos && chance(10)) {
			len = len / 2;
			how = " half";
		} else if (chaos && chance(5)) {
			len = 0;
			how = " nodata";
		}
		if (len) {
			ssize_t w = fill(o, r->off, len);

			snprintf(what, sizeof(what), "fill %s%s", nm(&msgs, r->id), how);
			log_ret(what, w);
		}
	}
	switch (chaos ? rnd(12) : 11) {
	case 0: {
		struct req *op = pick_req(CACHEFILES_OP_OPEN, 0);

		id = op ? op->id : r->id + 1000000;
		snprintf(what, sizeof(what), "complete %s on %s (an OPEN's id)",
			 op ? nm(&msgs, id) : "none", nm(&objs, o->oid));
		break;
	}
	case 1:
		id = r->id + 1000000;
		snprintf(what, sizeof(what), "complete %s+1000000 on %s (wrong)",
			 nm(&msgs, r->id), nm(&objs, o->oid));
		break;
	case 2:
		for (int i = 0; i < st.nobjs; i++)
			if (st.objs[i].fd >= 0 && &st.objs[i] != o)
				other = &st.objs[i];
		if (other) {
			fd = other->fd;
			snprintf(what, sizeof(what), "complete %s on %s (another object's fd)",
				 nm(&msgs, r->id), nm(&objs, other->oid));
			break;
		}
		/* fall through */
	default:
		r->done = 1;
		snprintf(what, sizeof(what), "complete %s on %s", nm(&msgs, r->id),
			 nm(&objs, o->oid));
		break;
	}
	ret = ioctl(fd, CACHEFILES_IOC_READ_COMPLETE, id);
	log_ret(what, ret < 0 ? -errno : ret);
	if (r->done)
		st.last_done_read = r->id;
	/* A refused READ_COMPLETE changes nothing. */
	if (!ret)
		settle();
}

static void act_complete(void)
{
	struct req *r = pick_req(CACHEFILES_OP_READ, 1);

	if (r)
		complete_read(r, 1);
	else
		complete_stale();
}

static struct obj *pick_fd(void)
{
	int idx[MAX_OBJS], n = 0;

	for (int i = 0; i < st.nobjs; i++)
		if (st.objs[i].fd >= 0)
			idx[n++] = i;
	return n ? &st.objs[idx[rnd(n)]] : NULL;
}

static void act_fd(void)
{
	struct obj *o = pick_fd();
	char what[160];
	const char *on;

	if (!o)
		return;
	on = nm(&objs, o->oid);
	switch (rnd(10)) {
	case 0:
	case 1:
	case 2: {
		static const long long offs[] = { 0, 1, 511, 4096, 8191, -1, -2, 1LL << 40 };
		static const unsigned long long lens[] = { 0, 1, 100, 4096, 8193, 65536 };
		long long off = offs[rnd(8)];
		unsigned long long len = lens[rnd(6)];

		/* -1 and -2: at the object's end, or one page before it. */
		if (off < 0)
			off = o->size < 0 ? 0 : off == -1 ? o->size : (o->size > 4096 ? o->size - 4096 : 0);
		snprintf(what, sizeof(what), "pwrite %s off=%lld len=%llu", on, off, len);
		log_ret(what, fill(o, off, len));
		break;
	}
	case 3: {
		static char zero[3000];
		ssize_t w = write(o->fd, zero, rnd(2) ? 0 : sizeof(zero));

		snprintf(what, sizeof(what), "write %s", on);
		log_ret(what, w < 0 ? -errno : w);
		break;
	}
	case 4:
	case 5:
	case 6: {
		static const int whence[] = { SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE, 9 };
		static const long long offs[] = { 0, 1, 4096, -1, 1LL << 40 };
		int w = whence[rnd(6)];
		long long off = offs[rnd(5)];
		off_t r = lseek(o->fd, off, w);

		snprintf(what, sizeof(what), "lseek %s %lld whence=%d", on, off, w);
		log_ret(what, r < 0 ? -errno : r);
		break;
	}
	case 7: {
		unsigned int c = rnd(2) ? 0x1234 : _IOW(0x98, 2, int);
		long r = ioctl(o->fd, c, 0);

		snprintf(what, sizeof(what), "ioctl %s %#x", on, c);
		log_ret(what, r < 0 ? -errno : r);
		break;
	}
	default:
		close(o->fd);
		o->fd = -1;
		logline("close %s", on);
		settle();
		break;
	}
}

static void act_misc(void)
{
	switch (rnd(12)) {
	case 0:
	case 1:
	case 2:
		cmd("restore", "restore");
		settle();
		break;
	case 3:
		cmd("bind ondemand (again)", "bind ondemand");
		break;
	case 4:
		cmd("dir /cache (after bind)", "dir /cache");
		break;
	case 5:
		cmd("tag fz (after bind)", "tag fz");
		break;
	case 6:
		cmd("bogus", "bogus 1");
		break;
	case 7: {
		struct pollfd p = { .fd = st.dev, .events = POLLIN | POLLOUT };
		int r = poll(&p, 1, 0);

		logline("poll => %d revents=%#x", r, r > 0 ? p.revents : 0);
		break;
	}
	case 8:
		if (st.mounted) {
			int r = umount2(MNT, 0);

			log_ret("umount", r < 0 ? -errno : 0);
			if (!r)
				st.mounted = 0;
			settle();
		}
		break;
	case 9:
		if (st.mounted) {
			int r = umount2(MNT, MNT_DETACH);

			log_ret("umount detach", r < 0 ? -errno : 0);
			if (!r)
				st.mounted = 0;
			settle();
		}
		break;
	default: {
		/* A command not NUL-terminated, or empty. */
		int r = rnd(2) ? dev_cmdn(st.dev, "restore", 7) : dev_cmdn(st.dev, "", 0);

		log_ret("short command", r);
		break;
	}
	}
}

/* --- the session: a bound cache and the anchor mount ------------------------- */

static char cache_dir[128];
static struct od_server anchor;
static int session_dev = -1;
#define MAX_KEEP 16
static char keep[MAX_KEEP][256];	/* the anchor's cache files */
static int nkeep;

static int kept(const char *path)
{
	for (int i = 0; i < nkeep; i++)
		if (!strcmp(keep[i], path))
			return 1;
	return 0;
}

static int rm_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	if (flag == FTW_F && !kept(path))
		unlink(path);
	return 0;
}

static int note_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	if (flag == FTW_F && nkeep < MAX_KEEP)
		snprintf(keep[nkeep++], sizeof(keep[0]), "%s", path);
	return 0;
}

/*
 * Bind a cache in this run's directory and mount the anchor in the domain,
 * unless a cache is bound already. Nothing here is logged: a trace's log
 * must not depend on whether the trace before it closed the devnode.
 */
static int session_start(void)
{
	int ret;
	pid_t m;

	if (session_dev >= 0)
		return 0;
	nkeep = 0;
	nftw(cache_dir, rm_file, 16, FTW_PHYS);
	session_dev = dev_open();
	if (session_dev < 0)
		return session_dev;
	ret = dev_cmd(session_dev, "dir %s", cache_dir);
	if (!ret)
		ret = dev_cmd(session_dev, "bind ondemand");
	if (!ret && !bound_to(backend()))
		ret = -ENXIO;
	if (ret)
		goto fail;
	memset(&anchor, 0, sizeof(anchor));
	anchor.dev = session_dev;
	m = start_mount("fsid=anchor.img," DOMAIN, ANCHOR_MNT);
	ret = od_serve_until(&anchor, m, 60000);
	if (ret) {
		fprintf(stderr, "fuzz: the anchor mount failed: %d\n", ret);
		ret = -EIO;
		goto fail;
	}
	nftw(cache_dir, note_file, 16, FTW_PHYS);
	return 0;
fail:
	close(session_dev);
	session_dev = -1;
	return ret;
}

/* After the devnode was closed: let the anchor and its cache go. */
static void session_end(void)
{
	umount2(ANCHOR_MNT, MNT_DETACH);
	od_close_all(&anchor);
	if (session_dev >= 0)
		close(session_dev);
	session_dev = -1;
}

/* --- one trace ---------------------------------------------------------------- */

/*
 * End the trace: its children killed, its mount gone, every request it left
 * read and answered (an OPEN with -ENOENT, a READ completed), its fds
 * closed, all logged; then its cache files deleted. The cache and the
 * anchor stay unless the trace closed the devnode.
 */
static void teardown(void)
{
	int killed = 0;

	for (int i = 0; i < st.nkids; i++) {
		if (!st.kids[i].exited) {
			kill(st.kids[i].pid, SIGKILL);
			killed++;
		}
	}
	if (killed) {
		logline("end: kill %d", killed);
		settle();
	}
	/* What was delivered and not answered: a killed mount can only end
	 * once its OPEN is answered (its lookup waits for it). */
	for (int i = 0; i < st.nreqs && st.dev >= 0; i++) {
		struct req *r = &st.reqs[i];
		struct obj *o = obj_by_oid(r->oid);
		int ret;

		if (r->done || r->op == CACHEFILES_OP_CLOSE)
			continue;
		r->done = 1;
		if (r->op == CACHEFILES_OP_OPEN) {
			ret = dev_cmd(st.dev, "copen %u,%d", r->id, -ENOENT);
			logline("end: copen %s,-ENOENT => %d", nm(&msgs, r->id), ret);
		} else if (o && o->fd >= 0) {
			ret = ioctl(o->fd, CACHEFILES_IOC_READ_COMPLETE, r->id);
			logline("end: complete %s => %d", nm(&msgs, r->id), ret < 0 ? -errno : ret);
		} else {
			continue;
		}
		settle();
	}
	if (st.mounted) {
		int r = umount2(MNT, 0);

		log_ret("end: umount", r < 0 ? -errno : 0);
		if (r)
			umount2(MNT, MNT_DETACH);
		st.mounted = 0;
		settle();
	}
	for (int i = 0; i < 32 && st.dev >= 0; i++) {
		ssize_t n = read(st.dev, msgbuf, sizeof(msgbuf));
		struct cachefiles_msg *m = (void *)msgbuf;

		if (n <= 0) {
			logline("end: devread => %s", n < 0 ? ename(errno) : "0");
			break;
		}
		if (m->opcode == CACHEFILES_OP_OPEN) {
			close(((struct cachefiles_open *)m->data)->fd);
			logline("end: devread => OPEN %s, copen -ENOENT => %d",
				oname(m->object_id), dev_cmd(st.dev, "copen %u,%d",
							    m->msg_id, -ENOENT));
		} else if (m->opcode == CACHEFILES_OP_READ) {
			struct obj *o = obj_by_oid(m->object_id);
			int r = o && o->fd >= 0 ?
				ioctl(o->fd, CACHEFILES_IOC_READ_COMPLETE, m->msg_id) : -1;

			logline("end: devread => READ %s, complete => %d", oname(m->object_id),
				r < 0 ? -errno : r);
		} else {
			logline("end: devread => CLOSE %s", oname(m->object_id));
		}
		settle();
	}
	for (int i = 0; i < st.nobjs; i++) {
		if (st.objs[i].fd >= 0)
			close(st.objs[i].fd);
		if (st.objs[i].blob >= 0)
			close(st.objs[i].blob);
	}
	st.nobjs = 0;
	if (st.dev < 0) {
		umount2(MNT, MNT_DETACH);
		session_end();
	}
	settle();
	for (int i = 0; i < st.nkids; i++)
		if (!st.kids[i].exited && wait_child(st.kids[i].pid, 20000) < 0)
			logline("end: %s HANG", st.kids[i].name);
	if (session_dev >= 0) {
		logline("end: poll %d", dev_pollin(session_dev, 0));
		nftw(cache_dir, rm_file, 16, FTW_PHYS);
	}
}

/*
 * One step a well-behaved daemon and its users would take next: read a
 * queued request, answer a delivered OPEN or READ, start a reader or a
 * mount. 0 if there is none.
 */
static int progress(void)
{
	struct req *r;

	if (dev_pollin(st.dev, 0)) {
		devread(CACHEFILES_MSG_MAX_SIZE, msgbuf);
		return 1;
	}
	r = pick_req(CACHEFILES_OP_OPEN, 1);
	if (r) {
		copen_answer(r);
		return 1;
	}
	r = pick_req(CACHEFILES_OP_READ, 1);
	if (r) {
		complete_read(r, 0);
		return 1;
	}
	if (st.mounted && st.readers < LIVE_READERS) {
		act_reader();
		return 1;
	}
	if (!st.mounted && !mount_live()) {
		act_mount();
		return 1;
	}
	return 0;
}

static int play(unsigned long long seed, const char *dir)
{
	char path[256];
	int steps, ret;

	snprintf(path, sizeof(path), "%s/%llu", dir, seed);
	logf = fopen(path, "w");
	if (!logf)
		return -1;
	rng_state = seed * 0x2545f4914f6cdd1dULL + 1;
	cur_seed = seed;
	trace_t0 = now_ms();
	timing = getenv("FUZZ_TIMING") ? atoi(getenv("FUZZ_TIMING")) : 0;
	zero_size = getenv("FUZZ_ZERO_SIZE") ? atoi(getenv("FUZZ_ZERO_SIZE")) : 0;
	memset(&st, 0, sizeof(st));
	msgs.n = objs.n = fds.n = 0;
	step = 0;
	lines = settle_ms = settles = 0;
	ret = session_start();
	if (ret) {
		logline("bind => %s", ename(-ret));
		fclose(logf);
		return -1;
	}
	st.dev = session_dev;
	step = 1;
	act_mount();
	steps = 16 + rnd(MAX_STEPS - 16);
	for (step = 2; step < steps && st.dev >= 0; step++) {
		unsigned int a = rnd(100);

		/* About half the steps move the protocol on, as a daemon would. */
		if (a < 50 && progress())
			continue;
		a = rnd(200);
		if (a < 44)
			act_devread();
		else if (a < 72)
			act_copen();
		else if (a < 100)
			act_complete();
		else if (a < 132)
			act_fd();
		else if (a < 148) {
			if (st.mounted && st.readers < LIVE_READERS)
				act_reader();
			else if (!st.mounted && !mount_live())
				act_mount();
		} else if (a < 160)
			act_kill();
		else if (a < 199 || step < 10)
			act_misc();
		else {
			close(st.dev);
			st.dev = session_dev = -1;
			logline("close devnode");
			settle();
		}
	}
	teardown();
	fclose(logf);
	if (timing)
		fprintf(stderr, "seed %llu: %ld lines in %ld ms, %ld of them in %ld settles\n",
			seed, lines, now_ms() - trace_t0, settle_ms, settles);
	return 0;
}

/* --- comparing two runs ------------------------------------------------------- */

#define MAX_LINES 4096
/* The most lines a reordered hunk of two readers spans (reader_reorder()). */
#define READER_WINDOW 24
/* Hunks reader_reorder() accepted, over a cmp run. */
static unsigned int reordered;

struct log {
	char *line[MAX_LINES];
	int n;
};

static int load(struct log *l, const char *dir, unsigned long long seed)
{
	char path[256], buf[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%llu", dir, seed);
	f = fopen(path, "r");
	l->n = 0;
	if (!f)
		return -1;
	while (l->n < MAX_LINES && fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		l->line[l->n++] = strdup(buf);
	}
	fclose(f);
	return 0;
}

static void unload(struct log *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->line[i]);
	l->n = 0;
}

/* A CLOSE delivered with the id of a released fd, at line from or later. */
static int stale_close_from(struct log *l, int from)
{
	for (int i = from; i < l->n; i++)
		if (strstr(l->line[i], "CLOSE") && strstr(l->line[i], " closed"))
			return 1;
	return 0;
}

/*
 * c-close-after-release: the built-in code's fd release means to drop the
 * object's unread CLOSE but compares the id of a message not yet delivered
 * (still 0), so the CLOSE stays and is delivered later with the id of a
 * released fd (-1); the Rust backend drops it at the release. Explains a
 * first difference at line at when the C log (a) has the fuzzer close an fd
 * before it and delivers such a CLOSE after that, and Rust never does.
 */
static int div_close_after_release(struct log *a, struct log *b, int at)
{
	int closed = -1;

	for (int i = 0; i < at && i < a->n; i++)
		if (strstr(a->line[i], " close o"))
			closed = closed < 0 ? i : closed;
	return closed >= 0 && stale_close_from(a, closed) && !stale_close_from(b, 0);
}

/* The differences between C (the first log) and Rust that are by design,
 * each documented under its name in Documentation/rust-backend.md. */
static const struct divergence {
	const char *name;
	int (*explains)(struct log *c, struct log *rust, int at);
} divergences[] = {
	{ "c-close-after-release", div_close_after_release },
};

#define N_DIV (sizeof(divergences) / sizeof(divergences[0]))
static unsigned int div_count[N_DIV];

/*
 * A line as the reorder check sees it: without its step number, a READ
 * delivery without its message name, a settle line without the names of
 * the readers that ended.
 */
static void canon(const char *l, char *out, size_t size)
{
	const char *p = l;
	size_t o = 0;

	/* Not the step number either: the READs moved to other steps. */
	while (isdigit((unsigned char)*p))
		p++;
	while (*p && o + 1 < size) {
		/* " m12 " after "=> N READ" and " r3=" in a settle line */
		if (*p == ' ' && (p[1] == 'm' || p[1] == 'r') && isdigit((unsigned char)p[2]) &&
		    ((p[1] == 'm' && strstr(l, " READ m")) || (p[1] == 'r' && strstr(l, " settle")))) {
			const char *q = p + 2;

			while (isdigit((unsigned char)*q))
				q++;
			if (p[1] == 'm' ? *q == ' ' : *q == '=') {
				out[o++] = ' ';
				out[o++] = p[1];
				p = q;
				continue;
			}
		}
		out[o++] = *p++;
	}
	out[o] = 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether the canonical lines ca[0..n) and cb[0..n) are the same in some order. */
static int same_multiset(char (*ca)[1024], char (*cb)[1024], int n)
{
	char *pa[READER_WINDOW], *pb[READER_WINDOW];

	for (int i = 0; i < n; i++) {
		pa[i] = ca[i];
		pb[i] = cb[i];
	}
	qsort(pa, n, sizeof(pa[0]), cmp_str);
	qsort(pb, n, sizeof(pb[0]), cmp_str);
	for (int i = 0; i < n; i++)
		if (strcmp(pa[i], pb[i]))
			return 0;
	return 1;
}

/*
 * Two readers that one step woke together (the first held a page the
 * second waited for) queue their next READs in the order the scheduler
 * runs them, which either backend's timing can flip: the READs are then
 * delivered, and the readers end, in the other order. Returns the line
 * after the longest such hunk starting at at (the same lines in another
 * order, but for message and reader names, within READER_WINDOW lines; at
 * least two READ deliveries and a reader's end among them), or -1.
 */
static int reader_reorder(struct log *a, struct log *b, int at)
{
	static char ca[READER_WINDOW][1024], cb[READER_WINDOW][1024];
	int last = at + READER_WINDOW;

	if (last > a->n)
		last = a->n;
	if (last > b->n)
		last = b->n;
	for (int i = at; i < last; i++) {
		canon(a->line[i], ca[i - at], sizeof(ca[0]));
		canon(b->line[i], cb[i - at], sizeof(cb[0]));
	}
	/* The longest such hunk: the readers' ends may come a few steps on. */
	for (int to = last; to >= at + 2; to--) {
		int reads = 0, ends = 0;

		if (strcmp(a->line[to - 1], b->line[to - 1]) || !same_multiset(ca, cb, to - at))
			continue;
		for (int i = at; i < to; i++) {
			if (!strcmp(a->line[i], b->line[i]))
				continue;
			reads += !!strstr(a->line[i], " READ m");
			ends += strstr(a->line[i], " settle") && strstr(a->line[i], " r");
		}
		if (reads >= 2 && ends >= 1)
			return to;
	}
	return -1;
}

/* 0 if equal, 1 if they differ, 2 if they differ as a divergence explains. */
static int cmp_one(const char *a, const char *b, unsigned long long seed, int c_vs_rust)
{
	struct log la, lb;
	int at, ret = 0;

	if (load(&la, a, seed) || load(&lb, b, seed)) {
		printf("# seed %llu: a log is missing\n", seed);
		unload(&la);
		unload(&lb);
		return 1;
	}
	for (at = 0; at < la.n && at < lb.n; at++) {
		int next;

		if (!strcmp(la.line[at], lb.line[at]))
			continue;
		next = reader_reorder(&la, &lb, at);
		if (next < 0)
			break;
		printf("# seed %llu line %d: two readers' READs in the other order (reader-order)\n",
		       seed, at + 1);
		reordered++;
		at = next - 1;
	}
	if (at < la.n || at < lb.n) {
		ret = 1;
		for (unsigned int d = 0; c_vs_rust && d < N_DIV; d++) {
			if (divergences[d].explains(&la, &lb, at)) {
				div_count[d]++;
				printf("# seed %llu line %d: %s (documented)\n", seed, at + 1,
				       divergences[d].name);
				ret = 2;
				break;
			}
		}
		if (ret == 1)
			printf("# seed %llu line %d: mismatch\n#   %s: %s\n#   %s: %s\n", seed, at + 1,
			       a, at < la.n ? la.line[at] : "(end)", b,
			       at < lb.n ? lb.line[at] : "(end)");
	}
	unload(&la);
	unload(&lb);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned long long seed, count;

	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && !strcmp(argv[1], "run")) {
		seed = strtoull(argv[2], NULL, 0);
		count = strtoull(argv[3], NULL, 0);
		unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		mkdir(argv[4], 0755);
		if (getenv("FUZZ_DATA"))
			data_dir = getenv("FUZZ_DATA");
		mkdir(ANCHOR_MNT, 0755);
		snprintf(cache_dir, sizeof(cache_dir), "/cache/fz-%s", backend());
		if (fresh_dir(cache_dir)) {
			fprintf(stderr, "fuzz: cannot make %s\n", cache_dir);
			return 1;
		}
		for (unsigned long long s = seed; s < seed + count; s++)
			if (play(s, argv[4]))
				fprintf(stderr, "fuzz: seed %llu did not start\n", s);
		session_end();
		/* fuzz.sh reports it: it shows the race is reached. */
		printf("# %s: %ld killed mounts completed anyway (unmounted)\n",
		       backend(), killed_mounted);
		return 0;
	}
	if ((argc == 6 || argc == 7) && !strcmp(argv[1], "cmp")) {
		int c_vs_rust = argc == 7 && !strcmp(argv[6], "c-rust");
		unsigned int bad = 0, div = 0;

		seed = strtoull(argv[4], NULL, 0);
		count = strtoull(argv[5], NULL, 0);
		for (unsigned long long s = seed; s < seed + count; s++) {
			int r = cmp_one(argv[2], argv[3], s, c_vs_rust);

			bad += r == 1;
			div += r == 2;
		}
		if (reordered)
			printf("# %u hunks where two readers' READs came in the other order\n",
			       reordered);
		printf("# %u of %llu traces differ", bad, count);
		if (div) {
			printf("; %u more differ as documented:", div);
			for (unsigned int d = 0; d < N_DIV; d++)
				if (div_count[d])
					printf(" %s %u", divergences[d].name, div_count[d]);
		}
		printf("\n");
		return bad ? 1 : 0;
	}
	if (argc == 2 && !strcmp(argv[1], "divergences")) {
		for (unsigned int d = 0; d < N_DIV; d++)
			printf("%s\n", divergences[d].name);
		return 0;
	}
	fprintf(stderr, "usage: fuzz run SEED COUNT DIR | fuzz cmp DIRA DIRB SEED COUNT [c-rust]"
		" | fuzz divergences\n");
	return 2;
}
