// SPDX-License-Identifier: GPL-2.0
/*
 * A request's round trip as the backend measures it: one data READ read by
 * the daemon and held for at least HOLD_MS before it is answered.
 *
 * Both backends: the reader waits while the READ is held, then gets its
 * data. The Rust backend, with counting on, also counts the READ: exactly
 * one more request completed, exactly one more in the latency histogram,
 * in a bucket [low, high) that holds the round trip as the test bounds it
 * from outside (at least the time between the READ's arrival and its
 * answer, at most the time between the reader's start and the answer's
 * return). A request keeps the clock in a 30-bit stamp of 1.024 us units
 * (rust/stats.rs): a wrong unit, shift or mask moves the count by orders
 * of magnitude, out of the bucket.
 */
#include "odtest.h"

#include <glob.h>

#define RS "/sys/kernel/debug/cachefiles_ondemand_rs/"
#define MNT "/mnt/stats"
#define FILE_PATH MNT "/mid/m4.bin"
#define HOLD_MS 120
#define BUCKETS 64

struct hist {
	long long completed;	/* every opcode's "completed" */
	long long count[BUCKETS];	/* by bucket: [2^(i-1), 2^i) ns */
};

/* The bucket index of a histogram line's low bound. */
static int bucket_of(unsigned long long low)
{
	int i = 0;

	while (low) {
		low >>= 1;
		i++;
	}
	return i;
}

/* Reads the bound cache's statistics; 0 on success. */
static int read_hist(struct hist *h)
{
	char path[256], line[256];
	FILE *f;
	glob_t g;
	int in_hist = 0;

	memset(h, 0, sizeof(*h));
	if (glob(RS "cache*/stats", 0, NULL, &g) || g.gl_pathc != 1)
		return -1;
	snprintf(path, sizeof(path), "%s", g.gl_pathv[0]);
	globfree(&g);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long low, n;
		long long q, c;
		char op[16];

		if (sscanf(line, "%15[a-z]: queued %lld completed %lld", op, &q, &c) == 3)
			h->completed += c;
		else if (!strncmp(line, "latency_ns", 10))
			in_hist = 1;
		else if (in_hist && (sscanf(line, " [%llu, %*[0-9]): %llu", &low, &n) == 2 ||
				     sscanf(line, " [%llu, inf): %llu", &low, &n) == 2) &&
			 bucket_of(low) < BUCKETS)
			h->count[bucket_of(low)] += n;
	}
	fclose(f);
	return 0;
}

static void write_str(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(s, f);
		fclose(f);
	}
}

int main(void)
{
	int rust = !strcmp(backend(), "rust");
	char buf[CACHEFILES_MSG_MAX_SIZE], was_on[8] = "0";
	struct cachefiles_msg *msg = (void *)buf;
	struct od_server s = { 0 };
	struct hist before, after;
	long t_start, t_got, t_answer, t_done;
	int dev, st, n, ok, moved, at = -1;
	pid_t reader;

	ktap_plan(rust ? 7 : 5);
	if (rust) {
		read_small(RS "stats_enabled", was_on, sizeof(was_on));
		write_str(RS "stats_enabled", "1");
	}
	dev = od_open_bound(&s, "stats");
	if (dev < 0)
		return 1;

	mkdir(MNT, 0755);
	st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 180000);
	/* The file's first page, so that the held READ is for its data. */
	n = od_serve_until(&s, start_read_random(FILE_PATH, 0, 4096), 60000);
	check(st == 0 && n == 0, "mounted, the file's first page read (status %d, %d)", st, n);

	t_start = now_ms();
	reader = start_read_random(FILE_PATH, 8192, 4096);
	do {
		n = dev_wait_msg(dev, buf, sizeof(buf), 60000);
		if (n > 0 && msg->opcode != CACHEFILES_OP_READ)
			od_answer(&s, msg);
	} while (n > 0 && msg->opcode != CACHEFILES_OP_READ);
	t_got = now_ms();
	ok = n > 0 && msg->opcode == CACHEFILES_OP_READ && wait_child(reader, 0) == -1;
	check(ok, "a data READ read and held, its reader waits (msg %u)", ok ? msg->msg_id : 0);
	if (!ok)
		return ktap_finish();

	if (rust)
		read_hist(&before);
	/* Held: the point of the test, not an ordering wait. */
	while (now_ms() - t_got < HOLD_MS)
		usleep(10000);
	t_answer = now_ms();
	st = od_answer_read(&s, msg);
	t_done = now_ms();
	n = wait_child(reader, 60000);
	check(st == 0 && n == 0,
	      "after %ld ms the READ is answered and its reader gets its data (%d, status %d)",
	      t_answer - t_got, st, n);

	if (rust) {
		ok = !read_hist(&after);
		moved = 0;
		for (int i = 0; i < BUCKETS; i++) {
			if (after.count[i] != before.count[i]) {
				moved++;
				at = i;
			}
		}
		check(ok && after.completed == before.completed + 1 && moved == 1 &&
		      after.count[at] == before.count[at] + 1,
		      "one more request completed (%lld to %lld), one more in the latency histogram (%d buckets moved)",
		      before.completed, after.completed, moved);
		/* [2^(at-1), 2^at) ns against [t_answer - t_got, t_done - t_start] ms. */
		ok = moved == 1 && at > 0 &&
		     (1ULL << (at - 1)) <= (unsigned long long)(t_done - t_start + 1) * 1000000 &&
		     (at >= 63 || (1ULL << at) > (unsigned long long)(t_answer - t_got) * 1000000);
		check(ok, "its bucket [%llu, %llu) ns holds the round trip, %ld to %ld ms",
		      at > 0 ? 1ULL << (at - 1) : 0, at > 0 && at < 63 ? 1ULL << at : 0,
		      t_answer - t_got, t_done - t_start + 1);
	}

	st = od_serve_until(&s, start_sh("umount " MNT), 60000);
	check(st == 0, "unmount (status %d)", st);
	od_close_all(&s);
	close(dev);
	if (rust)
		write_str(RS "stats_enabled", was_on);
	return ktap_finish();
}
