/* SPDX-License-Identifier: GPL-2.0 */
/*
 * odtest.h: KTAP output and the on-demand protocol, for the C tests that
 * drive /dev/cachefiles themselves (acting as the daemon) to check exact
 * behaviour: errnos, request contents, lifetimes. Header-only; each test is
 * one program.
 */
#ifndef ODTEST_H
#define ODTEST_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/cachefiles.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOBS "/host/out/data/blobs"
#define TREE "/host/out/data/tree"

static int ktap_n, ktap_failed;

static void ktap_plan(int n)
{
	printf("KTAP version 1\n1..%d\n", n);
	fflush(stdout);
}

static void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* One test point. Returns cond so callers can stop early. */
static int check(int cond, const char *fmt, ...)
{
	va_list ap;

	ktap_n++;
	if (!cond)
		ktap_failed++;
	printf("%s %d ", cond ? "ok" : "not ok", ktap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return cond;
}

static int ktap_finish(void)
{
	return ktap_failed ? 1 : 0;
}

static const char *backend(void)
{
	const char *b = getenv("CFOD_BACKEND");

	return b ? b : "c";
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dev_open(void)
{
	int fd = open("/dev/cachefiles", O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* Write a command; 0 (the whole length was accepted) or -errno. */
static int dev_cmdn(int dev, const void *cmd, size_t len)
{
	ssize_t n = write(dev, cmd, len);

	if (n < 0)
		return -errno;
	return n == (ssize_t)len ? 0 : -EIO;
}

static int dev_cmd(int dev, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return dev_cmdn(dev, buf, n);
}

/* A fresh cache directory for this test and backend, then bind. */
static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) && errno != ENOENT ? -1 : 0;
}

/*
 * An empty directory at path, whatever was there (in this process: a
 * fork and exec of a shell costs about a second under KASAN and TCG).
 */
static int fresh_dir(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT)
		return -1;
	return mkdir(path, 0700);
}

/* A small file's text, NUL-terminated, in buf; its length, or 0. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return n;
}

/*
 * Whether the bound cache uses backend b: rust when the module's debugfs
 * "bound" says 1, else c when fscache lists an active cache (the built-in
 * code has it), else none (as bound_backend() in ktap.sh).
 */
static int bound_to(const char *b)
{
	char buf[4096];
	const char *got = "none";

	if (read_small("/sys/kernel/debug/cachefiles_ondemand_rs/bound", buf, sizeof(buf)) &&
	    atoi(buf) == 1) {
		got = "rust";
	} else if (read_small("/proc/fs/netfs/caches", buf, sizeof(buf))) {
		/* Two header lines, then "ID REF VOLS OBJS ACCES STATE NAME". */
		char *line = strchr(buf, '\n');

		line = line ? strchr(line + 1, '\n') : NULL;
		while (line && *++line) {
			unsigned int id;
			int r, v, o, a;
			char st;

			if (sscanf(line, "%x %d %d %d %d %c", &id, &r, &v, &o, &a, &st) == 6 &&
			    st == 'A')
				got = "c";
			line = strchr(line, '\n');
		}
	}
	return !strcmp(got, b);
}

static int dev_bind(int dev, const char *name)
{
	char dir[128];
	int ret;

	snprintf(dir, sizeof(dir), "/cache/%s-%s", name, backend());
	if (fresh_dir(dir))
		return -EIO;
	ret = dev_cmd(dev, "dir %s", dir);
	if (ret)
		return ret;
	ret = dev_cmd(dev, "bind ondemand");
	if (ret)
		return ret;
	/* Every test asserts which backend serves it. */
	if (!bound_to(backend())) {
		diag("the cache is not bound to the %s backend", backend());
		return -ENXIO;
	}
	return 0;
}

static int dev_pollin(int dev, int timeout_ms)
{
	struct pollfd p = { .fd = dev, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static ssize_t dev_read(int dev, void *buf, size_t len)
{
	ssize_t n = read(dev, buf, len);

	return n < 0 ? -errno : n;
}

/* Wait up to timeout_ms for a message; its length, 0 on timeout, or -errno. */
static ssize_t dev_wait_msg(int dev, void *buf, size_t len, int timeout_ms)
{
	long end = now_ms() + timeout_ms;
	ssize_t n;

	do {
		n = dev_read(dev, buf, len);
		if (n != 0)
			return n;
		dev_pollin(dev, 100);
	} while (now_ms() < end);
	return 0;
}

/* Fork a child that mounts erofs with options; it exits with the errno. */
static pid_t start_mount(const char *opts, const char *target)
{
	pid_t pid;

	mkdir(target, 0755);
	pid = fork();
	if (pid == 0) {
		/* Not the devnode nor anonymous fds: a mount holding the
		 * devnode would keep it from being released under the test.
		 */
		close_range(3, ~0U, 0);
		if (mount("none", target, "erofs", 0, opts) < 0)
			_exit(errno & 0xff);
		_exit(0);
	}
	return pid;
}

/* Fork a child that runs a shell command; it exits with its status. */
static pid_t start_sh(const char *cmd)
{
	pid_t pid = fork();

	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/*
 * start_sh() without this process' fds: the anonymous fds come without
 * O_CLOEXEC, so a command started by start_sh() holds every object the
 * test has open, and closing the daemon's own fd then releases nothing.
 */
static pid_t start_cmd(const char *cmd)
{
	pid_t pid = fork();

	if (pid == 0) {
		close_range(3, ~0U, 0);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/*
 * The child's exit code, 128 + signal if killed, or -1 if it is still
 * running after timeout_ms (it is then left running).
 */
static int wait_child(pid_t pid, int timeout_ms)
{
	long end = now_ms() + timeout_ms;
	int status;

	do {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) :
			       128 + WTERMSIG(status);
		usleep(20000);
	} while (now_ms() < end);
	return -1;
}

/* The integer a shell command prints, or -1. */
static int sh_int(const char *cmd)
{
	FILE *f = popen(cmd, "r");
	int n = -1;

	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

static int count_fds(void)
{
	return sh_int("ls /proc/self/fd | wc -l");
}

static const char *open_cookie(struct cachefiles_msg *msg, char *name, size_t len)
{
	struct cachefiles_open *load = (void *)msg->data;
	size_t klen = load->cookie_key_size < len - 1 ? load->cookie_key_size : len - 1;

	memcpy(name, load->data + load->volume_key_size, klen);
	name[klen] = 0;
	return name;
}

/* A minimal in-test daemon: objects by id, served from BLOBS. */
struct od_obj {
	unsigned int id;
	int anon_fd, blob_fd;
	off_t size;
};

#define OD_MAX_OBJS 64
struct od_server {
	int dev;
	struct od_obj objs[OD_MAX_OBJS];
	unsigned int last_msg_id;
	unsigned long opens, reads, closes;
	/* If set, sees every message before it is answered. */
	void (*seen)(struct cachefiles_msg *msg);
};

static struct od_obj *od_find(struct od_server *s, unsigned int id)
{
	for (int i = 0; i < OD_MAX_OBJS; i++)
		if (s->objs[i].anon_fd > 0 && s->objs[i].id == id)
			return &s->objs[i];
	return NULL;
}

static void od_answer_open(struct od_server *s, struct cachefiles_msg *msg)
{
	struct cachefiles_open *load = (void *)msg->data;
	char name[256], path[512];
	struct stat st;
	int i, bfd;

	s->opens++;
	snprintf(path, sizeof(path), "%s/%s", BLOBS,
		 open_cookie(msg, name, sizeof(name)));
	bfd = open(path, O_RDONLY | O_CLOEXEC);
	for (i = 0; i < OD_MAX_OBJS && s->objs[i].anon_fd > 0; i++)
		;
	if (bfd < 0 || fstat(bfd, &st) < 0 || i == OD_MAX_OBJS) {
		dev_cmd(s->dev, "copen %u,%d", msg->msg_id, -ENOENT);
		close(load->fd);
		if (bfd >= 0)
			close(bfd);
		return;
	}
	s->objs[i] = (struct od_obj){ msg->object_id, load->fd, bfd, st.st_size };
	dev_cmd(s->dev, "copen %u,%lld", msg->msg_id, (long long)st.st_size);
}

/* Copy the range READ msg asks for from the blob into the cache file
 * (not completed); its object, or NULL if it is unknown. */
static struct od_obj *od_fill_read(struct od_server *s, struct cachefiles_msg *msg)
{
	static char buf[1 << 20] __attribute__((aligned(4096)));
	struct cachefiles_read *load = (void *)msg->data;
	struct od_obj *o = od_find(s, msg->object_id);
	unsigned long long off = load->off, end = load->off + load->len;

	if (!o)
		return NULL;
	if (end > (unsigned long long)o->size)
		end = o->size;
	while (off < end) {
		size_t n = end - off > sizeof(buf) ? sizeof(buf) : end - off;
		ssize_t r = pread(o->blob_fd, buf, n, off);

		if (r <= 0 || pwrite(o->anon_fd, buf, r, off) != r)
			break;
		off += r;
	}
	return o;
}

static int od_answer_read(struct od_server *s, struct cachefiles_msg *msg)
{
	struct od_obj *o;

	s->reads++;
	o = od_fill_read(s, msg);
	if (!o)
		return -ENOENT;
	return ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, msg->msg_id) < 0 ?
	       -errno : 0;
}

static void od_answer_close(struct od_server *s, struct cachefiles_msg *msg)
{
	struct od_obj *o = od_find(s, msg->object_id);

	s->closes++;
	if (!o)
		return;
	close(o->anon_fd);
	close(o->blob_fd);
	o->anon_fd = 0;
}

static void od_answer(struct od_server *s, struct cachefiles_msg *msg)
{
	if (s->seen)
		s->seen(msg);
	s->last_msg_id = msg->msg_id;
	switch (msg->opcode) {
	case CACHEFILES_OP_OPEN:
		od_answer_open(s, msg);
		break;
	case CACHEFILES_OP_READ:
		od_answer_read(s, msg);
		break;
	case CACHEFILES_OP_CLOSE:
		od_answer_close(s, msg);
		break;
	}
}

/*
 * Open the devnode, bind it as the cache tag name and check that as a test
 * point; the devnode's fd, also set as s->dev, or -1.
 */
static int od_open_bound(struct od_server *s, const char *name)
{
	int dev = dev_open();
	int st = dev < 0 ? dev : dev_bind(dev, name);

	check(st == 0, "devnode opened and bound (backend %s) (%d)", backend(), st);
	if (st)
		return -1;
	s->dev = dev;
	return dev;
}

/* Serve requests until the child exits; its status as wait_child() gives. */
static int od_serve_until(struct od_server *s, pid_t child, int timeout_ms)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	long end = now_ms() + timeout_ms;

	do {
		int status;
		ssize_t n;

		while ((n = dev_read(s->dev, buf, sizeof(buf))) > 0)
			od_answer(s, (void *)buf);
		if (waitpid(child, &status, WNOHANG) == child)
			return WIFEXITED(status) ? WEXITSTATUS(status) :
			       128 + WTERMSIG(status);
		dev_pollin(s->dev, 20);
	} while (now_ms() < end);
	return -1;
}

/* Serve requests for timeout_ms. */
static void od_serve_for(struct od_server *s, int timeout_ms)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	long end = now_ms() + timeout_ms;

	do {
		while (dev_read(s->dev, buf, sizeof(buf)) > 0)
			od_answer(s, (void *)buf);
		dev_pollin(s->dev, 20);
	} while (now_ms() < end);
}

/*
 * Serve requests until at least `opens` OPENs have been answered in all, or
 * timeout_ms. A mount returns once its primary blob is open; the lookup of
 * an extra device's cookie (device=) runs in fscache's worker, and its OPEN
 * may come after the mount returned.
 */
static void od_serve_opens(struct od_server *s, unsigned long opens, int timeout_ms)
{
	long end = now_ms() + timeout_ms;

	while (s->opens < opens && now_ms() < end)
		od_serve_for(s, 20);
}

static void od_close_all(struct od_server *s)
{
	for (int i = 0; i < OD_MAX_OBJS; i++) {
		if (s->objs[i].anon_fd > 0) {
			close(s->objs[i].anon_fd);
			close(s->objs[i].blob_fd);
			s->objs[i].anon_fd = 0;
		}
	}
}

/*
 * For the race tests (tests/race_*.c, stress.c): thread states, a D-state
 * scan, and the CPU count and duration of a run.
 */
#include <dirent.h>

/* The state letter (R, S, D...) of a thread of this process, or 0. */
static char od_task_state(pid_t tid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	if (!read_small(path, buf, sizeof(buf)))
		return 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/*
 * Wait up to timeout_ms until a thread of this process is asleep in the
 * kernel in one of states (e.g. "D" or "SD"); 1 if it was seen so.
 */
static int od_wait_task_state(pid_t tid, const char *states, int timeout_ms)
{
	long end = now_ms() + timeout_ms;

	do {
		char c = od_task_state(tid);

		if (c && strchr(states, c))
			return 1;
		usleep(1000);
	} while (now_ms() < end);
	return 0;
}

/* Every thread in the system in D state; with list, each as a diagnostic. */
static int od_d_state_count(int list)
{
	DIR *procs = opendir("/proc");
	struct dirent *p;
	int n = 0;

	if (!procs)
		return -1;
	while ((p = readdir(procs))) {
		char path[600], buf[512], *c;
		struct dirent *t;
		DIR *tasks;

		if (p->d_name[0] < '0' || p->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/task", p->d_name);
		tasks = opendir(path);
		if (!tasks)
			continue;
		while ((t = readdir(tasks))) {
			FILE *f;

			if (t->d_name[0] < '0' || t->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/task/%s/stat",
				 p->d_name, t->d_name);
			f = fopen(path, "re");
			if (!f)
				continue;
			if (fgets(buf, sizeof(buf), f) && (c = strrchr(buf, ')')) &&
			    c[1] == ' ' && c[2] == 'D') {
				n++;
				if (list)
					diag("in D state: %.*s", (int)(c - buf + 3), buf);
			}
			fclose(f);
		}
		closedir(tasks);
	}
	closedir(procs);
	return n;
}

/*
 * Threads stuck in D state: a task merely passing through D (a disk wait)
 * is not counted, one still there after about 2 s is, and is listed. The
 * hung-task detector does not see killable waits; this does.
 */
static int od_d_state_scan(void)
{
	int n = 0;

	for (int i = 0; i < 10; i++) {
		n = od_d_state_count(0);
		if (n == 0)
			return 0;
		usleep(200000);
	}
	return od_d_state_count(1);
}

static long od_race_t0;

/* Start of a race test: how many CPUs it races on, and its clock. */
static void od_race_begin(void)
{
	od_race_t0 = now_ms();
	diag("nproc %ld", sysconf(_SC_NPROCESSORS_ONLN));
}

/* End of a race test: one point for no task in D state; its duration. */
static int od_race_end(void)
{
	int d = od_d_state_scan();

	check(d == 0, "no task left in D state (%d)", d);
	diag("duration %ld s", (now_ms() - od_race_t0 + 500) / 1000);
	return ktap_finish();
}

/*
 * For the tests of issue 17: this process' own fds, a reader that reports
 * its errno, and a thread asleep in poll() on the devnode.
 */
#include <pthread.h>
#include <sys/syscall.h>

/* The fds of this very process (count_fds() counts those of a child ls,
 * which does not inherit O_CLOEXEC ones). */
static int own_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* not the directory's own fd */
}

/*
 * One pread() of len bytes at off of path, with readahead off if random is
 * set: the bytes read, or -errno of the open() or the pread().
 */
static ssize_t od_pread_file(const char *path, void *buf, size_t len, off_t off, int random)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	if (random)
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	n = pread(fd, buf, len, off);
	if (n < 0)
		n = -errno;
	close(fd);
	return n;
}

/*
 * Fork a child that reads len bytes at off of path with one pread(); it
 * exits with 0 if it got them all, the errno if the read failed, 255 on a
 * short read. With random set, readahead is off (POSIX_FADV_RANDOM): one
 * read_folio, no retry of a failed readahead folio, so the reader's errno
 * is the one its own READ ended with.
 */
static pid_t start_read_adv(const char *path, off_t off, size_t len, int random)
{
	pid_t pid = fork();

	if (pid == 0) {
		static char rbuf[1 << 20];
		ssize_t n;

		close_range(3, ~0U, 0);
		if (len > sizeof(rbuf))
			len = sizeof(rbuf);
		n = od_pread_file(path, rbuf, len, off, random);
		if (n < 0)
			_exit(-n & 0xff);
		_exit(n == (ssize_t)len ? 0 : 255);
	}
	return pid;
}

static pid_t start_read(const char *path, off_t off, size_t len)
{
	return start_read_adv(path, off, len, 0);
}

/*
 * A thread asleep in poll() on the devnode with a long timeout: whatever
 * should wake the daemon must wake it, well before the timeout. Its pollers
 * in the tests loop with short timeouts, which hide a missing wake-up.
 */
struct pollwait {
	int dev, timeout_ms;
	pthread_t thread;
	volatile pid_t tid;
	volatile int done, revents;
	volatile long woke_at;
};

static void *pollwait_thread(void *arg)
{
	struct pollwait *w = arg;
	struct pollfd p = { .fd = w->dev, .events = POLLIN };

	w->tid = syscall(SYS_gettid);
	/* The raw syscall, so that /proc shows it as poll (7). */
	if (syscall(SYS_poll, &p, 1, w->timeout_ms) == 1)
		w->revents = p.revents;
	w->woke_at = now_ms();
	w->done = 1;
	return NULL;
}

/* The thread's current syscall number, or -1 (running, or gone). */
static int task_syscall(pid_t tid)
{
	char path[64];
	int nr = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%d", &nr) != 1)
			nr = -1;
		fclose(f);
	}
	return nr;
}

/*
 * Start the thread and wait until it sleeps in poll(); 1 if it does (0 if
 * poll() returned at once, e.g. because something is already readable).
 */
static int pollwait_start(struct pollwait *w, int dev, int timeout_ms)
{
	long end = now_ms() + 10000;

	memset(w, 0, sizeof(*w));
	w->dev = dev;
	w->timeout_ms = timeout_ms;
	if (pthread_create(&w->thread, NULL, pollwait_thread, w))
		return 0;
	while (!w->done && now_ms() < end) {
		if (w->tid && od_task_state(w->tid) == 'S' &&
		    task_syscall(w->tid) == SYS_poll)
			return 1;
		usleep(1000);
	}
	return 0;
}

/* Join the thread; how long after since_ms it woke, or -1 if it timed out
 * without POLLIN. */
static long pollwait_end(struct pollwait *w, long since_ms)
{
	pthread_join(w->thread, NULL);
	return w->revents & POLLIN ? w->woke_at - since_ms : -1;
}

/* start_read() with readahead off (see start_read_adv()). */
static pid_t start_read_random(const char *path, off_t off, size_t len)
{
	return start_read_adv(path, off, len, 1);
}

/* Join a thread within timeout_ms; 1 if it ended. */
static int od_join_within(pthread_t t, int timeout_ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

/*
 * Serve the daemon's requests until a byte arrives on signal_fd (a child
 * saying it got somewhere) or timeout_ms pass; the byte, or -1.
 */
static int od_serve_until_signal(struct od_server *s, int signal_fd, int timeout_ms)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	long end = now_ms() + timeout_ms;

	do {
		struct pollfd p[2] = {
			{ .fd = s->dev, .events = POLLIN },
			{ .fd = signal_fd, .events = POLLIN },
		};
		unsigned char c;

		if (poll(p, 2, 1000) < 0)
			return -1;
		if (p[1].revents)
			return read(signal_fd, &c, 1) == 1 ? c : -1;
		if (p[0].revents & POLLIN)
			while (dev_read(s->dev, buf, sizeof(buf)) > 0)
				od_answer(s, (void *)buf);
	} while (now_ms() < end);
	return -1;
}

/*
 * Close the devnode and check that the cache it held is freed: the devnode
 * opens again (EBUSY while the release is still running), within 5 s.
 */
static void od_check_freed(int dev)
{
	close(dev);
	for (int i = 0; i < 50 && (dev = dev_open()) == -EBUSY; i++)
		usleep(100000);
	check(dev >= 0, "the cache is freed: the devnode opens again");
	if (dev >= 0)
		close(dev);
}

#endif /* ODTEST_H */
