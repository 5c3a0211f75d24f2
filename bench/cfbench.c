// SPDX-License-Identifier: GPL-2.0
/*
 * cfbench: the I/O patterns of the benchmarks, run inside the guest.
 *
 *   cfbench seq FILE
 *	read FILE front to back in 1 MiB reads; prints its throughput
 *   cfbench rand FILE COUNT SEED LATFILE
 *	COUNT 4 KiB preads at distinct random page offsets, readahead off
 *	(POSIX_FADV_RANDOM), one at a time; prints IOPS and latency
 *	percentiles, writes every latency (ns) to LATFILE
 *   cfbench par DIR NREADERS
 *	NREADERS threads, thread i reads every file of DIR/r<i> front to
 *	back; prints the aggregate throughput and the fairness between them
 *   cfbench rps FILE NTHREADS COUNT SEED
 *	NTHREADS threads share COUNT distinct random 4 KiB pages of FILE,
 *	readahead off; prints the completed reads per second
 *   cfbench ttfb fscache|file|exec SRC MNTDIR COUNT LATFILE [CMD...]
 *	for blob i in 0..COUNT-1: mount it on MNTDIR/i, open MNTDIR/i/f.bin
 *	and read one byte; the time from the start of the mount to that byte
 *	is blob i's time to first byte. fscache: erofs over fscache with
 *	-o fsid=SRC/b<i>.img's name (SRC is unused but for the name);
 *	file: erofs backed by the file SRC/b<i>.img; exec: run CMD...
 *	SRC/b<i>.sqfs MNTDIR/i (a FUSE server) and wait for the mount.
 *	Unmounts everything at the end.
 *   cfbench tsc-khz
 *	(on the host) the TSC's rate against CLOCK_MONOTONIC_RAW, in kHz.
 *	Under TCG the guest's TSC is the host's, but the guest kernel cannot
 *	calibrate it (no HPET or PM timer to compare with) and falls back to
 *	jiffies, far too coarse for per-read latencies; scripts/bench.sh
 *	passes this rate as tsc_early_khz= instead.
 *   cfbench mount SRC DIR [OPTIONS]
 *	mount erofs read-only with mount(2): busybox mount would put a loop
 *	device under a regular file, and erofs is to read the file itself
 *   cfbench time BYTES CMD...
 *	run CMD, its stdout on /dev/null, and time it from before its fork to
 *	its exit, which must be 0; prints the throughput of BYTES in that time.
 *	The benchmarks' outside clients (busybox dd and cat) run under it.
 *   cfbench mark
 *	execute the marker of the instruction-count plugin once
 *	(bench/plugin/icount.c: "xchg %bx,%bx", a no-op); the plugin, if
 *	QEMU runs it, writes its counts so far. Prints nothing.
 *   cfbench spin N
 *	a marker, N turns of a loop of two instructions (dec, jnz), a
 *	marker: the plugin's user count between the two grows by exactly 2
 *	a turn (its calibration, in scripts/bench-report.py). Prints nothing.
 *   cfbench spinx N
 *	the same with a loop of three (nop, dec, jnz) whose dec crosses a
 *	page boundary: exactly 3 a turn, where QEMU 7.2's plugin interface
 *	lists the dec in two blocks (the plugin's page-crossing correction).
 *   cfbench pollnode DEV N
 *	open DEV (the cachefiles devnode, unbound), a marker, N poll()s of
 *	it that do not wait, a marker: cachefiles_daemon_poll's count
 *	between the two is N times that of one call (the calibration of a
 *	kernel range). Prints nothing.
 *
 * Output: one line of "key=value" pairs on stdout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "cfbench"
#include "util.h"

#define PAGE 4096
#define SEQ_BS (1 << 20)
#define MAX_READERS 64
#define MAX_BLOBS 1024

/* splitmix64: a small deterministic generator, the same for every run */
static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* COUNT distinct page numbers below NPAGES, in random order */
static uint32_t *pick_pages(uint64_t npages, uint64_t count, uint64_t seed)
{
	uint32_t *p;
	uint64_t i;

	if (count > npages) {
		errno = EINVAL;
		die("%llu reads but only %llu pages", (unsigned long long)count,
		    (unsigned long long)npages);
	}
	p = malloc(npages * sizeof(*p));
	if (!p)
		die("malloc");
	for (i = 0; i < npages; i++)
		p[i] = i;
	rng_state = seed;
	for (i = 0; i < count; i++) {
		uint64_t j = i + rng() % (npages - i);
		uint32_t t = p[i];

		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* nearest-rank percentile of a sorted array */
static uint64_t pct(const uint64_t *v, size_t n, double q)
{
	size_t r = (size_t)(q / 100.0 * n + 0.999999);

	if (r < 1)
		r = 1;
	if (r > n)
		r = n;
	return v[r - 1];
}

static void write_lat(const char *path, const uint64_t *v, size_t n)
{
	FILE *f = fopen(path, "w");
	size_t i;

	if (!f)
		die("%s", path);
	for (i = 0; i < n; i++)
		fprintf(f, "%llu\n", (unsigned long long)v[i]);
	if (fclose(f))
		die("%s", path);
}

static void print_lat(const char *prefix, uint64_t *v, size_t n)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		sum += v[i];
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("%sp50_us=%.1f %sp99_us=%.1f %smean_us=%.1f %smax_us=%.1f",
	       prefix, pct(v, n, 50) / 1e3, prefix, pct(v, n, 99) / 1e3,
	       prefix, (double)sum / n / 1e3, prefix, v[n - 1] / 1e3);
}

static uint64_t read_whole(const char *path, char *buf)
{
	uint64_t total = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		die("open %s", path);
	while ((r = read(fd, buf, SEQ_BS)) > 0)
		total += r;
	if (r < 0)
		die("read %s", path);
	close(fd);
	return total;
}

static int cmd_seq(int argc, char **argv)
{
	char *buf;
	uint64_t t0, t1, n;

	if (argc != 1)
		return 2;
	buf = aligned_alloc(PAGE, SEQ_BS);
	if (!buf)
		die("malloc");
	t0 = now_ns();
	n = read_whole(argv[0], buf);
	t1 = now_ns();
	printf("bytes=%llu ns=%llu mibps=%.2f\n", (unsigned long long)n,
	       (unsigned long long)(t1 - t0),
	       n / 1048576.0 / ((t1 - t0) / 1e9));
	return 0;
}

static int open_random(const char *path, uint64_t *npages)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		die("open %s", path);
	errno = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	if (errno)
		die("fadvise %s", path);
	*npages = st.st_size / PAGE;
	return fd;
}

static int cmd_rand(int argc, char **argv)
{
	uint64_t npages, count, i, t0, t1, *lat;
	uint32_t *pages;
	char *buf;
	int fd;

	if (argc != 4)
		return 2;
	fd = open_random(argv[0], &npages);
	count = strtoull(argv[1], NULL, 0);
	pages = pick_pages(npages, count, strtoull(argv[2], NULL, 0));
	lat = calloc(count, sizeof(*lat));
	buf = aligned_alloc(PAGE, PAGE);
	if (!lat || !buf)
		die("malloc");
	t0 = now_ns();
	for (i = 0; i < count; i++) {
		uint64_t s = now_ns();

		if (pread(fd, buf, PAGE, (off_t)pages[i] * PAGE) != PAGE)
			die("pread %s page %u", argv[0], pages[i]);
		lat[i] = now_ns() - s;
	}
	t1 = now_ns();
	write_lat(argv[3], lat, count);
	printf("reads=%llu ns=%llu iops=%.1f ", (unsigned long long)count,
	       (unsigned long long)(t1 - t0), count / ((t1 - t0) / 1e9));
	print_lat("", lat, count);
	printf("\n");
	return 0;
}

struct reader {
	pthread_t thread;
	char dir[512];
	uint64_t bytes, start, end;
};

static pthread_barrier_t barrier;

static void *par_reader(void *arg)
{
	struct reader *r = arg;
	struct dirent **names;
	char path[1024], *buf = aligned_alloc(PAGE, SEQ_BS);
	int i, n;

	if (!buf)
		die("malloc");
	n = scandir(r->dir, &names, NULL, alphasort);
	if (n < 0)
		die("scandir %s", r->dir);
	pthread_barrier_wait(&barrier);
	r->start = now_ns();
	for (i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", r->dir,
				 names[i]->d_name);
			r->bytes += read_whole(path, buf);
		}
		free(names[i]);
	}
	r->end = now_ns();
	free(names);
	free(buf);
	return NULL;
}

static int cmd_par(int argc, char **argv)
{
	static struct reader rd[MAX_READERS];
	double tp, sum = 0, sumsq = 0, lo = 1e300, hi = 0;
	uint64_t start = UINT64_MAX, end = 0, bytes = 0;
	int i, n;

	if (argc != 2)
		return 2;
	n = atoi(argv[1]);
	if (n < 1 || n > MAX_READERS)
		return 2;
	pthread_barrier_init(&barrier, NULL, n);
	for (i = 0; i < n; i++) {
		snprintf(rd[i].dir, sizeof(rd[i].dir), "%s/r%d", argv[0], i);
		errno = pthread_create(&rd[i].thread, NULL, par_reader, &rd[i]);
		if (errno)
			die("pthread_create");
	}
	for (i = 0; i < n; i++) {
		pthread_join(rd[i].thread, NULL);
		if (rd[i].start < start)
			start = rd[i].start;
		if (rd[i].end > end)
			end = rd[i].end;
		bytes += rd[i].bytes;
		tp = rd[i].bytes / 1048576.0 / ((rd[i].end - rd[i].start) / 1e9);
		sum += tp;
		sumsq += tp * tp;
		if (tp < lo)
			lo = tp;
		if (tp > hi)
			hi = tp;
	}
	/* Jain's fairness index: 1 when every reader got the same rate */
	printf("bytes=%llu ns=%llu mibps=%.2f reader_min_mibps=%.2f reader_max_mibps=%.2f jain=%.4f\n",
	       (unsigned long long)bytes, (unsigned long long)(end - start),
	       bytes / 1048576.0 / ((end - start) / 1e9), lo, hi,
	       sum * sum / (n * sumsq));
	return 0;
}

static struct {
	int fd;
	uint32_t *pages;
	uint64_t count;
	uint64_t next;
} rps;

static void *rps_worker(void *arg __attribute__((unused)))
{
	char *buf = aligned_alloc(PAGE, PAGE);
	uint64_t i;

	if (!buf)
		die("malloc");
	pthread_barrier_wait(&barrier);
	while ((i = __atomic_fetch_add(&rps.next, 1, __ATOMIC_RELAXED)) < rps.count)
		if (pread(rps.fd, buf, PAGE, (off_t)rps.pages[i] * PAGE) != PAGE)
			die("pread page %u", rps.pages[i]);
	free(buf);
	return NULL;
}

static int cmd_rps(int argc, char **argv)
{
	pthread_t th[MAX_READERS];
	uint64_t npages, t0, t1;
	int i, n;

	if (argc != 4)
		return 2;
	rps.fd = open_random(argv[0], &npages);
	n = atoi(argv[1]);
	if (n < 1 || n > MAX_READERS)
		return 2;
	rps.count = strtoull(argv[2], NULL, 0);
	rps.pages = pick_pages(npages, rps.count, strtoull(argv[3], NULL, 0));
	pthread_barrier_init(&barrier, NULL, n + 1);
	for (i = 0; i < n; i++) {
		errno = pthread_create(&th[i], NULL, rps_worker, NULL);
		if (errno)
			die("pthread_create");
	}
	pthread_barrier_wait(&barrier);
	t0 = now_ns();
	for (i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	t1 = now_ns();
	printf("reads=%llu ns=%llu rps=%.1f\n", (unsigned long long)rps.count,
	       (unsigned long long)(t1 - t0), rps.count / ((t1 - t0) / 1e9));
	return 0;
}

/* wait until DIR is the root of another filesystem than its parent */
static int wait_mounted(const char *dir, dev_t parent, pid_t child)
{
	struct stat st;
	int status;

	for (;;) {
		if (stat(dir, &st) == 0 && st.st_dev != parent)
			return 0;
		if (child > 0 && waitpid(child, &status, WNOHANG) == child)
			return -1;	/* the server died before mounting */
		usleep(50);
	}
}

static int cmd_ttfb(int argc, char **argv)
{
	const char *kind, *src, *mnt;
	char dir[512], img[512], file[600], opts[600], c;
	uint64_t *lat, count, i, t0;
	struct stat pst;
	pid_t pid;
	int fd;

	if (argc < 5)
		return 2;
	kind = argv[0];
	src = argv[1];
	mnt = argv[2];
	count = strtoull(argv[3], NULL, 0);
	if (count < 1 || count > MAX_BLOBS)
		return 2;
	lat = calloc(count, sizeof(*lat));
	if (!lat)
		die("malloc");
	if (stat(mnt, &pst) < 0)
		die("stat %s", mnt);
	for (i = 0; i < count; i++) {
		snprintf(dir, sizeof(dir), "%s/%llu", mnt, (unsigned long long)i);
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			die("mkdir %s", dir);
	}
	for (i = 0; i < count; i++) {
		snprintf(dir, sizeof(dir), "%s/%llu", mnt, (unsigned long long)i);
		snprintf(file, sizeof(file), "%s/f.bin", dir);
		t0 = now_ns();
		if (!strcmp(kind, "fscache")) {
			snprintf(opts, sizeof(opts), "fsid=b%03llu.img",
				 (unsigned long long)i);
			if (mount("none", dir, "erofs", MS_RDONLY, opts) < 0)
				die("mount %s %s", dir, opts);
		} else if (!strcmp(kind, "file")) {
			snprintf(img, sizeof(img), "%s/b%03llu.img", src,
				 (unsigned long long)i);
			if (mount(img, dir, "erofs", MS_RDONLY, NULL) < 0)
				die("mount %s", img);
		} else if (!strcmp(kind, "exec") && argc > 5) {
			char *args[64];
			int j, k = 0;

			snprintf(img, sizeof(img), "%s/b%03llu.sqfs", src,
				 (unsigned long long)i);
			for (j = 5; j < argc && k < 61; j++)
				args[k++] = argv[j];
			args[k++] = img;
			args[k++] = dir;
			args[k] = NULL;
			pid = fork();
			if (pid < 0)
				die("fork");
			if (!pid) {
				execv(args[0], args);
				_exit(127);
			}
			if (wait_mounted(dir, pst.st_dev, pid) < 0) {
				errno = EIO;
				die("%s did not mount %s", args[0], dir);
			}
		} else {
			return 2;
		}
		fd = open(file, O_RDONLY);
		if (fd < 0)
			die("open %s", file);
		if (read(fd, &c, 1) != 1)
			die("read %s", file);
		lat[i] = now_ns() - t0;
		close(fd);
	}
	for (i = 0; i < count; i++) {
		snprintf(dir, sizeof(dir), "%s/%llu", mnt, (unsigned long long)i);
		if (umount(dir) < 0)
			die("umount %s", dir);
	}
	while (wait(NULL) > 0)
		;
	write_lat(argv[4], lat, count);
	printf("blobs=%llu ", (unsigned long long)count);
	print_lat("", lat, count);
	printf("\n");
	return 0;
}

static int cmd_tsc_khz(void)
{
	struct timespec a, b;
	uint64_t t0, t1, ns;

	clock_gettime(CLOCK_MONOTONIC_RAW, &a);
	t0 = __builtin_ia32_rdtsc();
	usleep(500000);
	clock_gettime(CLOCK_MONOTONIC_RAW, &b);
	t1 = __builtin_ia32_rdtsc();
	ns = (b.tv_sec - a.tv_sec) * 1000000000ull + b.tv_nsec - a.tv_nsec;
	printf("%llu\n", (unsigned long long)((t1 - t0) * 1000000ull / ns));
	return 0;
}

static int cmd_mount(int argc, char **argv)
{
	if (argc != 2 && argc != 3)
		return 2;
	if (mount(argv[0], argv[1], "erofs", MS_RDONLY, argc == 3 ? argv[2] : NULL) < 0)
		die("mount %s %s", argv[0], argv[1]);
	return 0;
}

/* A positive decimal count of WHAT, or 0 (with a message) if S is not one. */
static unsigned long long count_arg(const char *s, const char *what)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || *end || !n) {
		fprintf(stderr, PROG ": bad %s count %s\n", what, s);
		return 0;
	}
	return n;
}

static int cmd_time(int argc, char **argv)
{
	unsigned long long bytes;
	uint64_t t0, t1;
	int null, status;
	pid_t pid;

	if (argc < 2)
		return 2;
	bytes = count_arg(argv[0], "byte");
	if (!bytes)
		return 2;
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null < 0)
		die("open /dev/null");
	t0 = now_ns();
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		if (dup2(null, STDOUT_FILENO) < 0)
			_exit(126);
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	t1 = now_ns();
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, PROG ": %s: wait status %#x\n", argv[1], status);
		return 1;
	}
	printf("bytes=%llu ns=%llu mibps=%.2f\n", bytes,
	       (unsigned long long)(t1 - t0),
	       bytes / 1048576.0 / ((t1 - t0) / 1e9));
	return 0;
}

/* The bytes themselves, so that no assembler picks another encoding. */
static int cmd_mark(void)
{
	__asm__ volatile(".byte 0x66, 0x87, 0xdb" ::: "memory");
	return 0;
}

static int cmd_spin(int argc, char **argv, int cross)
{
	unsigned long long n;

	if (argc != 1)
		return 2;
	n = count_arg(argv[0], "turn");
	if (!n)
		return 2;
	cmd_mark();
	if (!cross)
		__asm__ volatile("1: dec %0\n\tjnz 1b" : "+r"(n) : : "cc");
	else
		/* The dec starts 2 bytes before the end of its page. */
		__asm__ volatile("jmp 1f\n\t.balign 4096\n\t.skip 4093, 0x90\n"
				 "1: nop\n\tdec %0\n\tjnz 1b" : "+r"(n) : : "cc");
	cmd_mark();
	return 0;
}

static int cmd_pollnode(int argc, char **argv)
{
	unsigned long long n, i;
	struct pollfd p;

	if (argc != 2)
		return 2;
	n = count_arg(argv[1], "poll");
	if (!n)
		return 2;
	p.fd = open(argv[0], O_RDWR | O_CLOEXEC);
	if (p.fd < 0)
		die("open %s", argv[0]);
	p.events = POLLIN | POLLOUT;
	cmd_mark();
	for (i = 0; i < n; i++)
		if (poll(&p, 1, 0) < 0)
			die("poll %s", argv[0]);
	cmd_mark();
	close(p.fd);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 2;

	if (argc >= 2) {
		if (!strcmp(argv[1], "seq"))
			rc = cmd_seq(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "rand"))
			rc = cmd_rand(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "par"))
			rc = cmd_par(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "rps"))
			rc = cmd_rps(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "ttfb"))
			rc = cmd_ttfb(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "tsc-khz"))
			rc = cmd_tsc_khz();
		else if (!strcmp(argv[1], "mount"))
			rc = cmd_mount(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "time"))
			rc = cmd_time(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "mark"))
			rc = cmd_mark();
		else if (!strcmp(argv[1], "spin"))
			rc = cmd_spin(argc - 2, argv + 2, 0);
		else if (!strcmp(argv[1], "spinx"))
			rc = cmd_spin(argc - 2, argv + 2, 1);
		else if (!strcmp(argv[1], "pollnode"))
			rc = cmd_pollnode(argc - 2, argv + 2);
	}
	if (rc == 2)
		fprintf(stderr, "usage: see the comment at the top of bench/cfbench.c\n");
	return rc;
}
