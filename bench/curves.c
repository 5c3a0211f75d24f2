// SPDX-License-Identifier: GPL-2.0
/*
 * curves: one point of the cost curves (Documentation/benchmarks.md,
 * "Cost curves"), run inside the guest by bench/curves.sh. One process is
 * both the daemon (a thread on /dev/cachefiles) and the workload, so that
 * it knows how many READs are queued and unanswered at any moment and can
 * bracket the measured phase with plugin marks (cfbench mark's marker).
 *
 *   curves inflight CACHEDIR BLOB MNTDIR NOBJ THREADS ROUNDS MARKS LABEL
 *	bind a fresh cache over CACHEDIR, mount NOBJ erofs objects
 *	(fsid=o0 ... each an object of its own, all served from BLOB), open
 *	/d.bin of the first, readahead off; then THREADS reader threads do
 *	ROUNDS rounds of one pread of a distinct uncached 4 KiB page each.
 *	The daemon holds every READ until THREADS are queued and unanswered
 *	at once, then answers them all: THREADS in flight in every round.
 *	It reads a round's READs only once every reader waits in the kernel
 *	(the gate, below): one burst of THREADS READs a round, whatever order
 *	the readers ran in.
 *   curves fail CACHEDIR BLOB MNTDIR MODE N MARKS LABEL
 *	N readers of distinct pages; the daemon holds their READs until all N
 *	are queued and unanswered; then, between the marks, MODE fails some:
 *	death: the devnode is closed (the cache dies): all N fail;
 *	kill: the N/2 readers of a child process are killed (SIGKILL): their
 *	N/2 requests are cancelled while N/2 others stay queued.
 *
 * With CURVES_DOMAIN=D in the environment, the mounts share the fscache
 * domain D (-o domain_id=D): one volume for all of them, each fsid still
 * an object of its own.
 *
 * Prints one line "key=value ...". MARKS gets "SEQ LABEL start|end" per
 * mark (SEQ counts the lines already there: only this program marks).
 * Exits non-zero if the point was not reached (in-flight count, errors).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/cachefiles.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "curves"
#include "util.h"

#define PAGE		4096
#define MAXHELD		4096
#define MAXOBJ		65536
#define HOLD_TIMEOUT_NS	(120ull * 1000000000ull)
#define GATE_TIMEOUT_NS	(10ull * 1000000000ull)

enum { SERVE, BATCH, HOLD };

struct held {
	unsigned int id, obj;
	uint64_t off, len;
};

static int dev = -1, blob = -1;
static off_t blob_size;
static int anon[MAXOBJ];
static struct held held[MAXHELD];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int mode = SERVE, target, nheld, reached, stop;
static uint64_t held_since;
static unsigned long n_open, n_read, n_close, peak, batches, batch_short, complete_err;
static const char *marks_path;
static unsigned int mark_seq;
/*
 * The gate of an in-flight point. The devnode's poll() and read() are
 * counted as the backend's, and how many of them a round takes depends on
 * how the readers' READs and the daemon's wake-ups interleave: read as they
 * come, a round of 256 READs cost each backend about 50 instructions a READ
 * more or less from one repetition to the next. So, in BATCH mode, once
 * poll() says a READ is queued, the daemon waits until every reader of the
 * point waits in the kernel (state D, a READ queued and unanswered: the
 * on-demand wait is killable), reading /proc, which neither backend's
 * ranges count, and only then reads the devnode: the round's READs in one
 * burst, until read() finds nothing, then answers them. "bursts" counts
 * the read loops that found a READ; with the gate holding, one a round.
 */
static pid_t gate_tid[MAXHELD];
static int gate_n;
static unsigned long bursts, gate_timeouts;

static void command(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (write(dev, buf, n) != n)
		fprintf(stderr, "curves: '%s': %s\n", buf, strerror(errno));
}

/* The plugin's marker (bench/plugin/icount.c), and what it separates. */
static void mark(const char *label, const char *what)
{
	FILE *f;

	/* the marker first: the file's write falls outside the phase */
	__asm__ volatile(".byte 0x66, 0x87, 0xdb" ::: "memory");
	f = fopen(marks_path, "a");
	if (!f)
		die("%s", marks_path);
	fprintf(f, "%u %s %s\n", ++mark_seq, label, what);
	fclose(f);
}

static void count_marks(void)
{
	FILE *f = fopen(marks_path, "r");
	int c;

	if (!f)
		return;
	while ((c = getc(f)) != EOF)
		mark_seq += c == '\n';
	fclose(f);
}

static void handle_open(struct cachefiles_msg *msg)
{
	struct cachefiles_open *load = (void *)msg->data;

	n_open++;
	if (msg->object_id >= MAXOBJ) {
		command("copen %u,%d", msg->msg_id, -ENOMEM);
		close(load->fd);
		return;
	}
	anon[msg->object_id] = load->fd;
	command("copen %u,%lld", msg->msg_id, (long long)blob_size);
}

static void answer(const struct held *h)
{
	static char buf[1 << 16] __attribute__((aligned(PAGE)));
	uint64_t off = h->off, end = h->off + h->len;
	int fd = h->obj < MAXOBJ ? anon[h->obj] : -1;

	if (end > (uint64_t)blob_size)
		end = blob_size;
	while (fd >= 0 && off < end) {
		size_t n = end - off > sizeof(buf) ? sizeof(buf) : end - off;
		ssize_t r = pread(blob, buf, n, off);

		if (r <= 0 || pwrite(fd, buf, r, off) != r)
			break;
		off += r;
	}
	if (fd < 0 || ioctl(fd, CACHEFILES_IOC_READ_COMPLETE, h->id) < 0)
		complete_err++;
}

/* With mu held: answer every held READ. */
static void answer_held(void)
{
	for (int i = 0; i < nheld; i++)
		answer(&held[i]);
	nheld = 0;
}

static void handle_close(struct cachefiles_msg *msg)
{
	n_close++;
	if (msg->object_id < MAXOBJ && anon[msg->object_id] >= 0) {
		close(anon[msg->object_id]);
		anon[msg->object_id] = -1;
	}
}

/* Whether thread tid of this process is in state D. */
static int task_waits(pid_t tid)
{
	char path[64], buf[512], *p;
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return 0;
	buf[r] = 0;
	/* "tid (comm) S ...": the comm may hold spaces and parentheses */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'D';
}

/* Wait until each of the first n readers is in state D; -1 on a timeout. */
static int gate_wait(int n)
{
	struct timespec pause = { 0, 20000 };
	uint64_t t0 = now_ns();

	for (int i = 0; i < n;) {
		pid_t tid = __atomic_load_n(&gate_tid[i], __ATOMIC_ACQUIRE);

		/* the point's phase ended meanwhile (see cmd_inflight) */
		if (!__atomic_load_n(&gate_n, __ATOMIC_ACQUIRE))
			return 0;

		/* a reader in D stays there until its READ is answered */
		if (tid && task_waits(tid)) {
			i++;
			continue;
		}
		if (now_ns() - t0 > GATE_TIMEOUT_NS)
			return -1;
		nanosleep(&pause, NULL);
	}
	return 0;
}

static void *daemon_thread(void *arg)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;

	(void)arg;
	for (;;) {
		struct pollfd pfd = { .fd = dev, .events = POLLIN };
		int gate, burst;
		ssize_t n;

		pthread_mutex_lock(&mu);
		if (stop || (mode == HOLD && reached)) {
			pthread_mutex_unlock(&mu);
			return NULL;
		}
		if (nheld && now_ns() - held_since > HOLD_TIMEOUT_NS) {
			/* never reached the target: answer, and say so */
			batch_short++;
			answer_held();
			reached = -1;
			pthread_cond_broadcast(&cv);
		}
		pthread_mutex_unlock(&mu);
		if (poll(&pfd, 1, 50) < 0 && errno != EINTR)
			die("poll");
		/* a timeout: no read() either, which would find nothing */
		if (!(pfd.revents & POLLIN))
			continue;
		/* the mode as it is now: it may have changed during poll() */
		pthread_mutex_lock(&mu);
		gate = mode == BATCH ? gate_n : 0;
		pthread_mutex_unlock(&mu);
		if (gate && gate_wait(gate) < 0)
			gate_timeouts++;
		burst = 0;
		while ((n = read(dev, buf, sizeof(buf))) > 0) {
			pthread_mutex_lock(&mu);
			if (msg->opcode == CACHEFILES_OP_OPEN) {
				handle_open(msg);
			} else if (msg->opcode == CACHEFILES_OP_CLOSE) {
				handle_close(msg);
			} else if (msg->opcode == CACHEFILES_OP_READ) {
				struct cachefiles_read *rd = (void *)msg->data;
				struct held h = { msg->msg_id, msg->object_id, rd->off, rd->len };

				n_read++;
				if (!burst++ && mode == BATCH)
					bursts++;
				if (mode == SERVE || nheld == MAXHELD) {
					answer(&h);
				} else {
					if (!nheld)
						held_since = now_ns();
					held[nheld++] = h;
					if ((unsigned long)nheld > peak)
						peak = nheld;
					if (nheld >= target && mode == HOLD) {
						reached = 1;
						pthread_cond_broadcast(&cv);
					}
				}
			}
			pthread_mutex_unlock(&mu);
		}
		/*
		 * A round is answered once the devnode has nothing more to read,
		 * as a daemon that reads until the queue is empty answers: behind
		 * the gate, that read() finds nothing in every round, as no
		 * reader can queue another READ before this answers.
		 */
		pthread_mutex_lock(&mu);
		if (mode == BATCH && nheld >= target) {
			batches++;
			answer_held();
		}
		pthread_mutex_unlock(&mu);
	}
}

/* The backend the cache is bound to, as tests/lib/ktap.sh's bound_backend. */
static const char *bound_backend(void)
{
	char line[512];
	int fd = open("/sys/kernel/debug/cachefiles_ondemand_rs/bound", O_RDONLY);
	FILE *f;
	int nr = 0;

	if (fd >= 0) {
		ssize_t r = read(fd, line, 1);

		close(fd);
		if (r == 1 && line[0] == '1')
			return "rust";
	}
	f = fopen("/proc/fs/netfs/caches", "r");
	if (!f)
		return "none";
	while (fgets(line, sizeof(line), f)) {
		char a[6][64];

		if (++nr > 2 && sscanf(line, "%63s %63s %63s %63s %63s %63s", a[0], a[1],
				       a[2], a[3], a[4], a[5]) == 6 && !strcmp(a[5], "A")) {
			fclose(f);
			return "c";
		}
	}
	fclose(f);
	return "none";
}

static pthread_t dthread;
static int nobj;
static char mntdir[256];

static void setup(const char *cachedir, const char *blobpath, const char *mnt, int objs)
{
	struct stat st;
	const char *domain = getenv("CURVES_DOMAIN");
	char dir[300], opt[128];

	/* an anonymous fd per object: more than the default 1024 files */
	struct rlimit rl = { .rlim_cur = 16384, .rlim_max = 16384 };

	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit");
	for (int i = 0; i < MAXOBJ; i++)
		anon[i] = -1;
	blob = open(blobpath, O_RDONLY);
	if (blob < 0 || fstat(blob, &st) < 0)
		die("%s", blobpath);
	blob_size = st.st_size;
	dev = open("/dev/cachefiles", O_RDWR);
	if (dev < 0)
		die("open /dev/cachefiles");
	command("dir %s", cachedir);
	if (write(dev, "bind ondemand", 13) != 13)
		die("bind ondemand");
	if (pthread_create(&dthread, NULL, daemon_thread, NULL))
		die("pthread_create");
	snprintf(mntdir, sizeof(mntdir), "%s", mnt);
	for (nobj = 0; nobj < objs; nobj++) {
		snprintf(dir, sizeof(dir), "%s/%d", mnt, nobj);
		if (domain)
			snprintf(opt, sizeof(opt), "domain_id=%s,fsid=o%d", domain, nobj);
		else
			snprintf(opt, sizeof(opt), "fsid=o%d", nobj);
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			die("mkdir %s", dir);
		if (mount("none", dir, "erofs", MS_RDONLY, opt) < 0)
			die("mount %s %s", dir, opt);
	}
}

/* Unmount (the CLOSEs served), stop the daemon thread, unbind. */
static void teardown(int dead)
{
	char dir[300];

	for (int i = 0; i < nobj; i++) {
		snprintf(dir, sizeof(dir), "%s/%d", mntdir, i);
		if (umount(dir) < 0)
			fprintf(stderr, "curves: umount %s: %s\n", dir, strerror(errno));
		rmdir(dir);
	}
	if (!dead) {
		pthread_mutex_lock(&mu);
		stop = 1;
		pthread_mutex_unlock(&mu);
		pthread_join(dthread, NULL);
	}
	for (int i = 0; i < MAXOBJ; i++)
		if (anon[i] >= 0)
			close(anon[i]);
	if (dev >= 0)
		close(dev);
}

/* Page j of a point: a bijection of 0..npages-1 (npages a power of 2), so
 * that neighbouring readers read pages far apart. */
static uint64_t page_of(uint64_t j, uint64_t npages)
{
	return (j * 2654435761ull) & (npages - 1);
}

struct reader {
	pthread_t t;
	int fd, idx, nthreads, rounds;
	uint64_t npages;
	pthread_barrier_t *start, *round;
	int errs;
	int err;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	char *buf = aligned_alloc(PAGE, PAGE);

	if (!buf)
		return NULL;
	if (r->idx < MAXHELD)
		__atomic_store_n(&gate_tid[r->idx], gettid(), __ATOMIC_RELEASE);
	pthread_barrier_wait(r->start);
	for (int k = 0; k < r->rounds; k++) {
		uint64_t j = (uint64_t)k * r->nthreads + r->idx;

		if (pread(r->fd, buf, PAGE, page_of(j, r->npages) * PAGE) != PAGE) {
			r->errs++;
			r->err = errno;
		}
		if (r->round)
			pthread_barrier_wait(r->round);
	}
	free(buf);
	return NULL;
}

static int open_data(uint64_t *npages)
{
	char path[300];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/0/d.bin", mntdir);
	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0)
		die("%s", path);
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	*npages = 1;
	while (*npages * 2 * PAGE <= (uint64_t)st.st_size)
		*npages *= 2;
	return fd;
}

static struct reader *start_readers(int fd, uint64_t npages, int first, int n, int total,
				    int rounds, pthread_barrier_t *start, pthread_barrier_t *round)
{
	struct reader *rd = calloc(n, sizeof(*rd));
	pthread_attr_t attr;

	if (!rd)
		die("calloc");
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 0; i < n; i++) {
		rd[i] = (struct reader){ .fd = fd, .idx = first + i, .nthreads = total,
					 .rounds = rounds, .npages = npages,
					 .start = start, .round = round };
		if (pthread_create(&rd[i].t, &attr, reader_thread, &rd[i]))
			die("pthread_create (%d)", i);
	}
	return rd;
}

static int join_readers(struct reader *rd, int n, int *err)
{
	int errs = 0;

	for (int i = 0; i < n; i++) {
		pthread_join(rd[i].t, NULL);
		errs += rd[i].errs;
		if (rd[i].errs)
			*err = rd[i].err;
	}
	return errs;
}

static int cmd_inflight(char **argv)
{
	int objs = atoi(argv[3]), threads = atoi(argv[4]), rounds = atoi(argv[5]);
	const char *label = argv[7];
	pthread_barrier_t start, round;
	uint64_t npages, t0, t1;
	unsigned long r0, r1;
	struct reader *rd;
	int fd, errs, err = 0;
	const char *bound;

	marks_path = argv[6];
	count_marks();
	if (objs < 1 || threads < 1 || threads > MAXHELD || rounds < 1)
		return 2;
	setup(argv[0], argv[1], argv[2], objs);
	bound = bound_backend();
	fd = open_data(&npages);
	if ((uint64_t)threads * rounds > npages) {
		fprintf(stderr, "curves: %d x %d reads, %llu pages\n", threads, rounds,
			(unsigned long long)npages);
		return 1;
	}
	pthread_barrier_init(&start, NULL, threads + 1);
	pthread_barrier_init(&round, NULL, threads);
	rd = start_readers(fd, npages, 0, threads, threads, rounds, &start, &round);
	pthread_mutex_lock(&mu);
	mode = BATCH;
	target = threads;
	__atomic_store_n(&gate_n, threads, __ATOMIC_RELEASE);
	peak = 0;
	r0 = n_read;
	pthread_mutex_unlock(&mu);
	mark(label, "start");
	t0 = now_ns();
	pthread_barrier_wait(&start);
	errs = join_readers(rd, threads, &err);
	t1 = now_ns();
	mark(label, "end");
	pthread_mutex_lock(&mu);
	r1 = n_read;
	mode = SERVE;
	__atomic_store_n(&gate_n, 0, __ATOMIC_RELEASE);
	answer_held();
	pthread_mutex_unlock(&mu);
	close(fd);
	teardown(0);
	printf("point=inflight label=%s bound=%s objects=%d threads=%d rounds=%d reads=%lu "
	       "expected=%d batches=%lu batch_short=%lu peak=%lu read_errors=%d errno=%d "
	       "complete_errors=%lu wall_ns=%llu open=%lu close=%lu bursts=%lu gate_timeouts=%lu\n",
	       label, bound, objs, threads, rounds, r1 - r0, threads * rounds, batches,
	       batch_short, peak, errs, err, complete_err, (unsigned long long)(t1 - t0),
	       n_open, n_close, bursts, gate_timeouts);
	return errs || batch_short || batches != (unsigned long)rounds ||
	       r1 - r0 != (unsigned long)threads * rounds || peak != (unsigned long)threads;
}

static int cmd_fail(char **argv)
{
	const char *how = argv[3], *label = argv[6];
	int n = atoi(argv[4]), death = !strcmp(how, "death"), k, errs, err = 0, st;
	pthread_barrier_t start, cstart;
	uint64_t npages, t0, t1;
	struct reader *rd;
	pid_t child = -1;
	const char *bound;
	int fd;

	marks_path = argv[5];
	count_marks();
	if (n < 2 || n > MAXHELD || (!death && strcmp(how, "kill")))
		return 2;
	setup(argv[0], argv[1], argv[2], 1);
	bound = bound_backend();
	fd = open_data(&npages);
	if ((uint64_t)n > npages)
		return 1;
	k = death ? n : n / 2;
	pthread_mutex_lock(&mu);
	mode = HOLD;
	target = n;
	pthread_mutex_unlock(&mu);
	if (!death) {
		/* the k readers to kill, in a process of their own */
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			/* only the readers: the daemon's files stay the parent's */
			close(dev);
			close(blob);
			for (int i = 0; i < MAXOBJ; i++)
				if (anon[i] >= 0)
					close(anon[i]);
			pthread_barrier_init(&cstart, NULL, k + 1);
			rd = start_readers(fd, npages, 0, k, n, 1, &cstart, NULL);
			pthread_barrier_wait(&cstart);
			join_readers(rd, k, &err);
			_exit(0);
		}
	}
	pthread_barrier_init(&start, NULL, n - (death ? 0 : k) + 1);
	rd = start_readers(fd, npages, death ? 0 : k, n - (death ? 0 : k), n, 1, &start, NULL);
	pthread_barrier_wait(&start);
	pthread_mutex_lock(&mu);
	while (!reached)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	if (reached < 0) {
		fprintf(stderr, "curves: %s: %d READs never queued at once (peak %lu)\n",
			label, n, peak);
		return 1;
	}
	if (death) {
		/* the daemon thread has stopped (HOLD reached) */
		pthread_join(dthread, NULL);
		mark(label, "start");
		t0 = now_ns();
		close(dev);
		dev = -1;
		errs = join_readers(rd, n, &err);
		t1 = now_ns();
		mark(label, "end");
	} else {
		pthread_join(dthread, NULL);
		mark(label, "start");
		t0 = now_ns();
		kill(child, SIGKILL);
		waitpid(child, &st, 0);
		t1 = now_ns();
		mark(label, "end");
		/* the other half: answered, outside the measured phase */
		pthread_mutex_lock(&mu);
		answer_held();
		mode = SERVE;
		reached = 0;
		pthread_mutex_unlock(&mu);
		if (pthread_create(&dthread, NULL, daemon_thread, NULL))
			die("pthread_create");
		errs = join_readers(rd, n - k, &err);
	}
	close(fd);
	teardown(death);
	printf("point=fail label=%s bound=%s how=%s queued=%d failed=%d peak=%lu "
	       "read_errors=%d errno=%d complete_errors=%lu wall_ns=%llu open=%lu read=%lu close=%lu\n",
	       label, bound, how, n, k, peak, errs, err, complete_err,
	       (unsigned long long)(t1 - t0), n_open, n_read, n_close);
	/* death: every reader must have failed; kill: none of the others */
	return peak != (unsigned long)n || (death ? errs != n : errs != 0);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 10 && !strcmp(argv[1], "inflight"))
		return cmd_inflight(argv + 2);
	if (argc == 9 && !strcmp(argv[1], "fail"))
		return cmd_fail(argv + 2);
	fprintf(stderr, "usage: see the comment at the top of bench/curves.c\n");
	return 2;
}
