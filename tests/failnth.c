// SPDX-License-Identifier: GPL-2.0
/*
 * Every allocation the backend makes, failed in turn. For each path of the
 * on-demand protocol (module load, bind with its statistics and debugfs
 * files, the OPEN send, its delivery with the anonymous fd, copen, the READ
 * send, READ_COMPLETE, restore, the statistics file, the CLOSE send), the
 * n-th allocation made under the backend's code fails, for n = 1, 2, ...
 * until the path runs through without reaching an n-th: then every
 * allocation on it has failed once. Each time the caller gets a clean
 * result, nothing hangs, and a well-behaved daemon then binds, mounts and
 * reads intact data. kmemleak at the end of this test (and of the boot)
 * finds nothing; the host's splat check fails the boot on any WARN.
 *
 * How: failslab with its stack filter (CONFIG_FAULT_INJECTION_STACKTRACE_
 * FILTER). Only allocations with a return address in the backend's code on
 * their stack count: the module area for the Rust backend (this module is
 * the only one loaded), ondemand.c's functions for the C one; not those
 * kmemleak makes to record an allocation (it falls back to a pool). A
 * path that runs in the caller's task uses per-task fail-nth, which honours
 * the filter, so no other task's allocation takes the failure (a copen
 * wakes the mount, whose next READ would). The OPEN and CLOSE sends run in
 * fscache's workers, out of fail-nth's reach: for them failslab runs in its
 * global mode, armed only while the path runs and nothing else does
 * (times=1), and picks the n-th allocation with interval: failslab counts
 * the allocations that pass its filters in a private counter, of which
 * this test keeps a copy (0 at boot, only this test arms failslab, and a
 * path that does not reach its n-th allocation made n-1, as the previous
 * round showed).
 *
 * The results per path go to the log and to $RES/failnth-BACKEND.txt;
 * Documentation/tests.md lists both backends' as the reference.
 */
#include "odtest.h"
#include <glob.h>

#define FS "/sys/kernel/debug/failslab/"
#define MNT "/mnt/failnth"
#define RS "/sys/kernel/debug/cachefiles_ondemand_rs/"
#define FILE_IN "small/s3.bin"

static int rust;
static unsigned long lo, hi;	/* the backend's code: [lo, hi) */
static unsigned long rlo, rhi;	/* kmemleak's allocation of its own records */
static int armed;
static FILE *out;

static int fs_set(const char *name, const char *fmt, ...)
{
	char path[128], val[64];
	va_list ap;
	int fd, ok;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), FS "%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
	close(fd);
	return ok ? 0 : -EIO;
}

static long fs_get(const char *name)
{
	char path[128], buf[64];

	snprintf(path, sizeof(path), FS "%s", name);
	if (!read_small(path, buf, sizeof(buf)))
		return -1;
	return strtol(buf, NULL, 0);
}

/* A line in the kernel log, to find a path's messages there. */
static void kmsg(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	(void)!write(fd, line, strlen(line));
	close(fd);
}

/*
 * Global mode, for the paths that run in fscache's workers: armed for one
 * failure (times=1) with a budget of space bytes. failslab lets an
 * allocation through while the budget left is larger than its size (and
 * takes the size off), fails the first that is not, and then stops
 * counting. So with the prefix sums P(k) of the path's allocation sizes,
 * space = P(k) fails the k-th, and the budget left then is P(k) - P(k-1):
 * each run tells the next one its space. A first run with a budget larger
 * than the path needs fails nothing and gives P(m), the last allocation's.
 */
static long space_left;

static void garm(long space)
{
	fs_set("times", "0");
	fs_set("interval", "1");
	fs_set("space", "%ld", space);
	fs_set("times", "1");
	armed = 1;
}

/* Disarm; whether an allocation failed. Sets space_left. */
static int gdisarm(void)
{
	int hit = fs_get("times") == 0;

	fs_set("times", "0");
	space_left = fs_get("space");
	armed = 0;
	return hit;
}

/* Armed, and the failure was injected. */
static int injected(void)
{
	return armed && fs_get("times") == 0;
}

/*
 * Per task: the n-th allocation under the backend that this task makes
 * fails (fail-nth honours the stack filter). For the paths that run in the
 * caller's own task: no other task's allocation can take the failure.
 */
static void tarm(int n)
{
	char v[16];
	int fd = open("/proc/thread-self/fail-nth", O_WRONLY | O_CLOEXEC);

	snprintf(v, sizeof(v), "%d", n);
	if (fd >= 0) {
		(void)!write(fd, v, strlen(v));
		close(fd);
	}
}

/* Disarm; whether the n-th allocation was reached (fail-nth went to 0). */
static int tdisarm(void)
{
	char v[16];
	int hit = read_small("/proc/thread-self/fail-nth", v, sizeof(v)) && atoi(v) == 0;
	int fd = open("/proc/thread-self/fail-nth", O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		(void)!write(fd, "0", 1);
		close(fd);
	}
	return hit;
}

/*
 * The backend's code from /proc/kallsyms: for Rust everything above the
 * kernel image (the module area: this module is the only one), for C the
 * functions of fs/cachefiles/ondemand.c, up to the next symbol.
 */
static int find_range(void)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	unsigned long a, top = 0, first = ~0UL, last = 0, next = ~0UL;
	char line[512], type, name[256];

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx %c %255s", &a, &type, name) != 3 || !a)
			continue;
		if (!strchr(line, '[') && a > top)
			top = a;
		if (type == 't' && !strcmp(name, "__alloc_object"))
			rlo = a;
		if ((type == 't' || type == 'T') && !strchr(line, '[') &&
		    (!strncmp(name, "cachefiles_ondemand_", 20) ||
		     !strcmp(name, "ondemand_object_worker"))) {
			if (a < first)
				first = a;
			if (a > last)
				last = a;
		}
	}
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx %c %255s", &a, &type, name) == 3 &&
		    (type == 't' || type == 'T') && a > last && a < next)
			next = a;
		if (sscanf(line, "%lx %c %255s", &a, &type, name) == 3 &&
		    (type == 't' || type == 'T') && rlo && a > rlo && (!rhi || a < rhi))
			rhi = a;
	}
	fclose(f);
	if (rust) {
		lo = top + 1;
		hi = 0xffffffffff000000UL;	/* MODULES_END */
	} else {
		lo = first;
		hi = next;
	}
	return lo && hi > lo && hi != ~0UL ? 0 : -1;
}

static int setup_failslab(void)
{
	int r = 0;

	r |= fs_set("times", "0");
	r |= fs_set("probability", "100");
	r |= fs_set("space", "0");
	r |= fs_set("verbose", "1");
	r |= fs_set("task-filter", "N");
	r |= fs_set("ignore-gfp-wait", "N");
	r |= fs_set("stacktrace-depth", "32");
	r |= fs_set("require-start", "%#lx", lo);
	r |= fs_set("require-end", "%#lx", hi);
	/* Not kmemleak's record of an allocation (it falls back to a pool):
	 * the n-th is the backend's own. */
	r |= fs_set("reject-start", "%#lx", rlo && rhi ? rlo : 0);
	r |= fs_set("reject-end", "%#lx", rlo && rhi ? rhi : 0);
	return r;
}

/* A child of this test and how it ended. */
struct kid {
	pid_t pid;
	int done, status;
};

static int kid_poll(struct kid *k)
{
	int st;

	if (!k->done && k->pid > 0 && waitpid(k->pid, &st, WNOHANG) == k->pid) {
		k->done = 1;
		k->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	return k->done;
}

/* The cache, its daemon and its mount. */
struct world {
	struct od_server s;
	struct kid mnt;
	int mounted;
};

/* Wait until the devnode is readable, k ended or a failure was injected. */
static int wait_event(struct world *w, struct kid *k, int ms)
{
	long end = now_ms() + ms;

	while (now_ms() < end) {
		if (dev_pollin(w->s.dev, 10) || (k && kid_poll(k)) || injected())
			return 0;
	}
	return -1;
}

/* Serve until k ended; -1 if it did not within ms. */
static int serve_kid(struct world *w, struct kid *k, int ms)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	long end = now_ms() + ms;

	while (!kid_poll(k)) {
		if (now_ms() > end)
			return -1;
		while (dev_read(w->s.dev, buf, sizeof(buf)) > 0)
			od_answer(&w->s, (void *)buf);
		dev_pollin(w->s.dev, 20);
	}
	return 0;
}

static int unlink_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return flag == FTW_F ? unlink(path) : 0;
}

/*
 * Bind a cache on /cache/failnth-BACKEND. Its files go, its directories
 * stay: a new volume's 256 fan-out directories cost seconds to make here,
 * looking them up costs little, and no data stays cached.
 */
static int w_bind(struct world *w)
{
	static int made;
	char dir[128];
	int r;

	memset(w, 0, sizeof(*w));
	w->s.dev = dev_open();
	if (w->s.dev < 0)
		return w->s.dev;
	snprintf(dir, sizeof(dir), "/cache/failnth-%s", backend());
	if (!made++ && fresh_dir(dir))
		return -EIO;
	if (nftw(dir, unlink_file, 16, FTW_PHYS))
		return -EIO;
	r = dev_cmd(w->s.dev, "dir %s", dir);
	if (!r)
		r = dev_cmd(w->s.dev, "bind ondemand");
	if (!r && !bound_to(backend()))
		r = -ENXIO;
	return r;
}

static int w_mount_start(struct world *w)
{
	w->mnt = (struct kid){ .pid = start_mount("fsid=simple.img", MNT) };
	return w->mnt.pid > 0 ? 0 : -1;
}

/* Serve the mount to its end: its errno, 0 if mounted, -1 on a hang. */
static int w_mount_end(struct world *w)
{
	if (serve_kid(w, &w->mnt, 60000))
		return -1;
	w->mounted = w->mnt.status == 0;
	return w->mnt.status;
}

/* Whether the reader of start_cmp_nth() reached its n-th allocation. */
static int *reader_hit;

/*
 * A child that reads FILE_IN in the mount and compares it with the tree:
 * 0 if equal, the errno of a failed read, 255 if the data differ. With n,
 * the n-th allocation under the backend in the child fails (its READ
 * sends), and *reader_hit says whether it was reached.
 */
static struct kid start_cmp_nth(int n)
{
	pid_t pid;

	*reader_hit = 0;
	pid = fork();
	if (pid == 0) {
		static char a[1 << 16], b[1 << 16];
		int fa, fb, bad = 0;
		ssize_t na, nb;

		close_range(3, ~0U, 0);
		if (n)
			tarm(n);
		fa = open(MNT "/" FILE_IN, O_RDONLY);
		fb = open(TREE "/" FILE_IN, O_RDONLY);
		if (fa < 0 || fb < 0)
			bad = fa < 0 ? errno & 0xff : 254;
		while (!bad) {
			na = read(fa, a, sizeof(a));
			if (na < 0) {
				bad = errno & 0xff;
				break;
			}
			nb = read(fb, b, sizeof(b));
			if (na != nb || memcmp(a, b, na))
				bad = 255;
			if (na <= 0)
				break;
		}
		if (n)
			*reader_hit = tdisarm();
		_exit(bad);
	}
	return (struct kid){ .pid = pid };
}

static struct kid start_cmp(void)
{
	return start_cmp_nth(0);
}

/* Unmount (serving the CLOSEs), close the devnode, wait for its release. */
static int w_down(struct world *w)
{
	int ok = 1;

	if (w->mnt.pid > 0 && !w->mnt.done && serve_kid(w, &w->mnt, 60000))
		ok = 0;
	if (w->mnt.done && w->mnt.status == 0) {
		struct kid u = { .pid = start_sh("umount " MNT) };

		if (serve_kid(w, &u, 60000) || u.status)
			ok = 0;
		od_serve_for(&w->s, 50);
	}
	od_close_all(&w->s);
	if (w->s.dev >= 0) {
		int dev;

		close(w->s.dev);
		for (int i = 0; i < 100 && (dev = dev_open()) == -EBUSY; i++)
			usleep(50000);
		if (dev < 0)
			ok = 0;
		else
			close(dev);
	}
	return ok;
}

/* A well-behaved daemon binds, serves a mount, and the data read are
 * the tree's. */
static int good_run(void)
{
	struct world w;
	struct kid r;
	int ok;

	ok = !w_bind(&w) && !w_mount_start(&w) && !w_mount_end(&w);
	if (ok) {
		r = start_cmp();
		ok = !serve_kid(&w, &r, 60000) && r.status == 0;
	}
	return w_down(&w) && ok;
}

static const char *err(int e)
{
	static char b[8][32];
	static int i;

	i = (i + 1) % 8;
	if (e < 0)
		snprintf(b[i], sizeof(b[i]), "%s", strerrorname_np(-e) ?: "E?");
	else if (e == 0)
		snprintf(b[i], sizeof(b[i]), "0");
	else
		snprintf(b[i], sizeof(b[i]), "%s", strerrorname_np(e) ?: "E?");
	return b[i];
}

/* Read the next message of a given opcode (answering the others). */
static int next_msg(struct world *w, void *buf, unsigned int opcode, struct kid *k)
{
	struct cachefiles_msg *msg = buf;

	for (;;) {
		if (wait_event(w, k, 30000) || (k && k->done))
			return -1;
		if (dev_read(w->s.dev, buf, CACHEFILES_MSG_MAX_SIZE) <= 0)
			continue;
		if (msg->opcode == opcode)
			return 0;
		od_answer(&w->s, msg);
	}
}

/* A path's set-up (before it is armed) failed: undo what it did. */
#define SETUP(cond)                                                   \
	do {                                                          \
		if (!(cond)) {                                        \
			snprintf(res, len, "set-up failed at line %d", __LINE__); \
			w_down(&w);                                   \
			return -1;                                    \
		}                                                     \
	} while (0)

/*
 * One path, with its n-th allocation failing. Sets *hit and writes what the
 * callers saw to res; returns 0, or -1 if something hung or did not end.
 */
typedef int (*path_fn)(long n, int *hit, char *res, size_t len);

static int p_insmod(long n, int *hit, char *res, size_t len)
{
	const char *ko = getenv("CFOD_KO") ?: "/host/cachefiles_ondemand_rs.ko";
	int fd, r, ret = 0;
	glob_t g;

	(void)!system("grep -q '^cachefiles_ondemand_rs ' /proc/modules && rmmod cachefiles_ondemand_rs");
	fd = open(ko, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	tarm(n);
	r = syscall(SYS_finit_module, fd, "", 0) ? -errno : 0;
	*hit = tdisarm();
	/* A debugfs file the module could not make is left out, as the
	 * debugfs API wants: count them. Then unload what loaded and load
	 * it again whole for the daemon that follows. */
	g.gl_pathc = 0;
	if (!r && glob(RS "*", 0, NULL, &g))
		g.gl_pathc = 0;
	snprintf(res, len, "insmod %s (%zu debugfs entries)", err(r), (size_t)g.gl_pathc);
	globfree(&g);
	if (!r && system("rmmod cachefiles_ondemand_rs"))
		ret = -1;
	if (syscall(SYS_finit_module, fd, "", 0))
		ret = -1;
	close(fd);
	return ret;
}

static int p_bind(long n, int *hit, char *res, size_t len)
{
	struct world w;
	char dir[128];
	int r;

	memset(&w, 0, sizeof(w));
	w.s.dev = dev_open();
	snprintf(dir, sizeof(dir), "/cache/failnth-%s", backend());
	SETUP(w.s.dev >= 0 && !nftw(dir, unlink_file, 16, FTW_PHYS) &&
	      !dev_cmd(w.s.dev, "dir %s", dir));
	tarm(n);
	r = dev_cmd(w.s.dev, "bind ondemand");
	*hit = tdisarm();
	snprintf(res, len, "bind %s", err(r));
	return w_down(&w) ? 0 : -1;
}

/* The mount's lookup sends the OPEN from an fscache worker. */
static int p_open(long n, int *hit, char *res, size_t len)
{
	struct world w;
	int ret = 0, m;

	SETUP(!w_bind(&w));
	garm(n);
	w_mount_start(&w);
	if (wait_event(&w, &w.mnt, 30000))
		ret = -1;
	*hit = gdisarm();
	m = w_mount_end(&w);
	snprintf(res, len, "mount %s, %s", m < 0 ? "HANG" : err(m),
		 w.s.opens ? "OPEN delivered" : "no OPEN");
	return w_down(&w) && !ret && m >= 0 ? 0 : -1;
}

/* The daemon's read of the OPEN: the anonymous fd and the object id. */
static int p_deliver(long n, int *hit, char *res, size_t len)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct world w;
	ssize_t r;
	int m;

	SETUP(!w_bind(&w) && !w_mount_start(&w) && !wait_event(&w, &w.mnt, 30000) &&
	      !w.mnt.done);
	tarm(n);
	r = dev_read(w.s.dev, buf, sizeof(buf));
	*hit = tdisarm();
	if (r > 0)
		od_answer(&w.s, (void *)buf);
	m = w_mount_end(&w);
	snprintf(res, len, "read %s, mount %s", r > 0 ? "OPEN" : err(r),
		 m < 0 ? "HANG" : err(m));
	return w_down(&w) && m >= 0 ? 0 : -1;
}

/* copen of the delivered OPEN. */
static int p_copen(long n, int *hit, char *res, size_t len)
{
	char buf[CACHEFILES_MSG_MAX_SIZE], name[256], path[512];
	struct cachefiles_msg *msg = (void *)buf;
	struct cachefiles_open *load = (void *)msg->data;
	struct world w;
	struct stat st;
	int m, c, bfd;

	SETUP(!w_bind(&w) && !w_mount_start(&w) && !next_msg(&w, buf, CACHEFILES_OP_OPEN, &w.mnt));
	snprintf(path, sizeof(path), "%s/%s", BLOBS, open_cookie(msg, name, sizeof(name)));
	bfd = open(path, O_RDONLY | O_CLOEXEC);
	SETUP(bfd >= 0 && !fstat(bfd, &st));
	w.s.objs[0] = (struct od_obj){ msg->object_id, load->fd, bfd, st.st_size };
	tarm(n);
	c = dev_cmd(w.s.dev, "copen %u,%lld", msg->msg_id, (long long)st.st_size);
	*hit = tdisarm();
	m = w_mount_end(&w);
	snprintf(res, len, "copen %s, mount %s", err(c), m < 0 ? "HANG" : err(m));
	return w_down(&w) && m >= 0 ? 0 : -1;
}

/* A reader's miss sends a READ from the reader's own task. */
static int p_read(long n, int *hit, char *res, size_t len)
{
	struct world w;
	struct kid r;
	int s;

	SETUP(!w_bind(&w) && !w_mount_start(&w) && !w_mount_end(&w));
	r = start_cmp_nth(n);
	s = serve_kid(&w, &r, 60000);
	*hit = *reader_hit;
	snprintf(res, len, "reader %s", s ? "HANG" : r.status == 255 ? "BAD DATA" : err(r.status));
	return w_down(&w) && !s ? 0 : -1;
}

/* READ_COMPLETE on the anonymous fd once the data are written. */
static int p_cread(long n, int *hit, char *res, size_t len)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;
	struct od_obj *o;
	struct world w;
	struct kid r;
	int c, s;

	SETUP(!w_bind(&w) && !w_mount_start(&w) && !w_mount_end(&w));
	r = start_cmp();
	SETUP(!next_msg(&w, buf, CACHEFILES_OP_READ, &r) && (o = od_fill_read(&w.s, msg)));
	tarm(n);
	c = ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, msg->msg_id) ? -errno : 0;
	*hit = tdisarm();
	s = serve_kid(&w, &r, 60000);
	snprintf(res, len, "READ_COMPLETE %s, reader %s", err(c),
		 s ? "HANG" : r.status == 255 ? "BAD DATA" : err(r.status));
	return w_down(&w) && !s ? 0 : -1;
}

/* restore with a READ delivered and not answered: it is delivered again. */
static int p_restore(long n, int *hit, char *res, size_t len)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct world w;
	struct kid r;
	int c, s;

	SETUP(!w_bind(&w) && !w_mount_start(&w) && !w_mount_end(&w));
	r = start_cmp();
	SETUP(!next_msg(&w, buf, CACHEFILES_OP_READ, &r));
	tarm(n);
	c = dev_cmd(w.s.dev, "restore");
	*hit = tdisarm();
	s = serve_kid(&w, &r, 60000);
	snprintf(res, len, "restore %s, reader %s", err(c),
		 s ? "HANG" : r.status == 255 ? "BAD DATA" : err(r.status));
	return w_down(&w) && !s ? 0 : -1;
}

/* Read a file: 0, or -errno of the open or the read. */
static int read_err(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (read(fd, buf, size) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* The statistics files in debugfs (Rust): totals and the cache's own. */
static int p_stats(long n, int *hit, char *res, size_t len)
{
	char buf[4096], path[256] = "";
	struct world w;
	glob_t g;
	int a, b;

	SETUP(!w_bind(&w));
	if (!glob(RS "cache*/stats", 0, NULL, &g) && g.gl_pathc == 1)
		snprintf(path, sizeof(path), "%s", g.gl_pathv[0]);
	globfree(&g);
	tarm(n);
	a = read_err(RS "stats", buf, sizeof(buf));
	b = read_err(path, buf, sizeof(buf));
	*hit = tdisarm();
	snprintf(res, len, "stats %s, %s %s", err(a), path + strlen(RS), err(b));
	return w_down(&w) ? 0 : -1;
}

/* The unmount's withdrawal sends the CLOSE from an fscache worker. */
static int p_close(long n, int *hit, char *res, size_t len)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	unsigned long closes;
	struct world w;
	struct kid u;
	long end;
	int ret = -1;

	SETUP(!w_bind(&w) && !w_mount_start(&w) && !w_mount_end(&w));
	closes = w.s.closes;
	garm(n);
	u = (struct kid){ .pid = start_sh("umount " MNT) };
	/* Until the umount is done and the CLOSE came, or the failure was
	 * injected (then no CLOSE comes). */
	end = now_ms() + 60000;
	while (now_ms() < end) {
		while (dev_read(w.s.dev, buf, sizeof(buf)) > 0)
			od_answer(&w.s, (void *)buf);
		if (kid_poll(&u) && (w.s.closes > closes || injected())) {
			ret = 0;
			break;
		}
		dev_pollin(w.s.dev, 10);
	}
	*hit = gdisarm();
	w.mnt.status = 1;	/* unmounted */
	snprintf(res, len, "umount %s, CLOSE %s", u.done ? err(u.status) : "HANG",
		 w.s.closes > closes ? "delivered" : "not sent");
	return w_down(&w) && !ret ? 0 : -1;
}

struct path {
	const char *name;
	path_fn fn;
	int rust_only;
	/* run in a worker: global mode, n is the space (see garm()) */
	int global;
	/* what every failed run's result must say, if anything */
	const char *must;
	/* the results a clean failure may give */
	const char *clean;
};

static int clean_result(const char *res, const char *allowed)
{
	/* Every errno in res must be in allowed (space separated). */
	const char *p = res;

	if (strstr(res, "HANG") || strstr(res, "BAD DATA") || strstr(res, "E?"))
		return 0;
	while ((p = strstr(p, " E"))) {
		char e[32] = "";

		sscanf(p + 1, "%31[A-Z0-9]", e);
		if (!strstr(allowed, e))
			return 0;
		p += 2;
	}
	return 1;
}

static const struct path paths[] = {
	{ "insmod", p_insmod, 1, 0, NULL, "ENOMEM" },
	{ "bind", p_bind, 0, 0, NULL, "ENOMEM" },
	/* An OPEN that could not be made whole is not sent. */
	{ "open", p_open, 0, 1, "no OPEN", "ENOBUFS ENOMEM EIO" },
	{ "deliver", p_deliver, 0, 0, NULL, "ENOMEM ENOBUFS EIO" },
	{ "copen", p_copen, 0, 0, NULL, "ENOMEM ENOBUFS EIO" },
	{ "read", p_read, 0, 0, NULL, "ENOMEM ENOBUFS EIO" },
	{ "cread", p_cread, 0, 0, NULL, "ENOMEM EIO" },
	{ "restore", p_restore, 0, 0, NULL, "ENOMEM EIO" },
	{ "stats", p_stats, 1, 0, NULL, "ENOMEM EIO" },
	{ "close", p_close, 0, 1, NULL, "ENOMEM" },
};
#define NPATHS (int)(sizeof(paths) / sizeof(paths[0]))

int main(void)
{
	char resf[256];
	int total_hits = 0, ret, npaths = 0;

	rust = !strcmp(backend(), "rust");
	reader_hit = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (reader_hit == MAP_FAILED)
		return 1;
	for (int p = 0; p < NPATHS; p++)
		npaths += rust || !paths[p].rust_only;
	ktap_plan(6 + 2 * npaths);
	mkdir(MNT, 0755);
	if (!check(access(FS "require-start", W_OK) == 0,
		   "failslab with its stack filter is in the kernel")) {
		ktap_finish();
	}
	ret = find_range() == 0 && setup_failslab() == 0;
	check(ret, "failslab armed for the %s backend's code only: [%#lx, %#lx)", backend(), lo, hi);
	diag("kmemleak's own records left out: [%#lx, %#lx)", rlo, rhi);
	check(good_run(), "a daemon binds and serves before any failure");
	snprintf(resf, sizeof(resf), "%s/failnth-%s.txt", getenv("RES") ?: "/tmp", backend());
	out = fopen(resf, "w");

	for (int p = 0; p < NPATHS; p++) {
		const struct path *P = &paths[p];
		int n, hit = 0, clean = 1, good = 0, bad = 0;
		char res[256];

		if (getenv("FAILNTH_PATHS") && !strstr(getenv("FAILNTH_PATHS"), P->name)) {
			for (int i = 0; i < 2; i++)
				printf("ok %d %s # SKIP not in FAILNTH_PATHS\n", ++ktap_n, P->name);
			continue;
		}
		/* No module to load and no statistics file: not C's paths
		 * (left out of its plan). */
		if (P->rust_only && !rust)
			continue;
		/* Task paths: n = 1, 2, ... until the n-th is not reached.
		 * Global ones: space from the whole path's down (garm()). */
		long arg = P->global ? 1L << 30 : 1;
		int runs = 0, fails = 0, done = 0;

		while (!done && ++runs <= 64) {
			kmsg("failnth: %s, %s %ld", P->name, P->global ? "space" : "allocation", arg);
			if (P->fn(arg, &hit, res, sizeof(res))) {
				diag("%s: run %d: something hung (%s)", P->name, runs, res);
				clean = 0;
				break;
			}
			if (!hit) {
				long total = P->global ? arg - space_left : 0;

				if (!P->global || fails || total <= 0) {
					if (P->global && fails)
						diag("%s: nothing failed with space %ld (not deterministic?)",
						     P->name, arg);
					diag("%s: %d allocation(s) under the backend; without a failure: %s",
					     P->name, P->global && !fails ? 0 : fails, res);
					break;
				}
				diag("%s: %ld bytes of allocations under the backend; without a failure: %s",
				     P->name, total, res);
				arg = total;
				continue;
			}
			fails++;
			total_hits++;
			if (P->global) {
				diag("%s: allocation ending at byte %ld failed: %s", P->name, arg, res);
				arg -= space_left;	/* P(k-1) */
				done = arg <= 0;
			} else {
				diag("%s: allocation %ld failed: %s", P->name, arg, res);
				arg++;
			}
			if (out)
				fprintf(out, "%s %d %s\n", P->name, fails, res);
			if (!clean_result(res, P->clean) || (P->must && !strstr(res, P->must)))
				clean = 0;
			if (good_run())
				good++;
			else
				bad++;
		}
		n = fails + 1;
		if (out)
			fprintf(out, "%s allocations %d\n", P->name, n - 1);
		check(clean && runs <= 64,
		      "%s: each of its %d allocation(s) failed in turn, with a clean result (%s%s%s)",
		      P->name, n - 1, P->clean, P->must ? "; " : "", P->must ?: "");
		check(bad == 0, "%s: after each failure a daemon binds and serves intact data (%d of %d)",
		      P->name, good, good + bad);
	}
	fs_set("times", "0");
	if (out)
		fclose(out);
	check(total_hits > 0, "allocations under the backend failed: %d in all", total_hits);
	(void)!system("echo scan >/sys/kernel/debug/kmemleak; sleep 1; echo scan >/sys/kernel/debug/kmemleak");
	{
		char buf[256];

		check(read_small("/sys/kernel/debug/kmemleak", buf, sizeof(buf)) <= 0,
		      "kmemleak finds nothing unreferenced");
	}
	check(od_d_state_scan() == 0, "no task left in D state");
	return ktap_finish();
}
