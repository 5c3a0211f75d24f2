// SPDX-License-Identifier: GPL-2.0
/*
 * race_release: the anonymous-fd release race (issue 11, item 4). The
 * daemon closes an object's anonymous fd A while a reader forces a reopen
 * of the same object (its READ finds the object closed, a new OPEN brings
 * a new fd B, copen); then the filesystem is unmounted and the CLOSE it
 * queues must reach the daemon carrying B's object id.
 *
 * On the Rust backend the module's debugfs knob release_delay_ms makes the
 * release of A sleep between "object marked closed" and "its unread
 * CLOSEs swept", so the whole reopen, the READ and the unmount's CLOSE
 * happen inside that window: the old fd's sweep must not eat the CLOSE
 * meant for B. The steps are ordered by events: the closing thread is seen
 * asleep in the kernel (/proc), the reopen OPEN and the CLOSE are seen on
 * the devnode (read, and POLLIN) while close(A) has not returned, and the
 * devnode is read only after close(A) returned. Without the knob the Rust
 * variant fails. The C backend (no knob) runs the same sequence with
 * close(A) finished before the reader starts.
 */
#include "odtest.h"
#include <pthread.h>
#include <sys/syscall.h>

#define MNT "/mnt/race_release"
#define KNOB "/sys/kernel/debug/cachefiles_ondemand_rs/release_delay_ms"
#define DELAY_MS 4000
#define ROUNDS 3

static const char *const files[ROUNDS] = {
	"mid/m4.bin", "a/b/c/d/deep.bin", "mid/m3.bin",
};

static int fd_a;
static volatile int close_started, close_done;
static pid_t closer_tid;

static void *closer(void *arg)
{
	closer_tid = syscall(SYS_gettid);
	__atomic_store_n(&close_started, 1, __ATOMIC_SEQ_CST);
	close(fd_a);
	__atomic_store_n(&close_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int knob_set(int ms)
{
	FILE *f = fopen(KNOB, "we");
	int ok;

	if (!f)
		return 0;
	ok = fprintf(f, "%d\n", ms) > 0;
	return fclose(f) == 0 && ok;
}

static int join_within(pthread_t t, int timeout_ms)
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

int main(void)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;
	int rust = !strcmp(backend(), "rust");
	unsigned long opens_in_window = 0, closes_in_window = 0, right_close = 0;
	struct od_server s = { 0 };
	int dev, st, knob = 0;

	ktap_plan(3 + ROUNDS * 8 + (rust ? 3 : 0));
	od_race_begin();
	dev = dev_open();
	if (!check(dev >= 0 && dev_bind(dev, "race_release") == 0, "bind"))
		return 1;
	s.dev = dev;
	if (rust) {
		knob = knob_set(DELAY_MS);
		check(knob, "release_delay_ms knob present and set to %d ms", DELAY_MS);
	} else {
		diag("C backend: no knob, close(A) returns before the reopen");
	}

	for (int round = 0; round < ROUNDS; round++) {
		unsigned int id_a = 0, id_b = 0;
		struct od_obj *o = NULL;
		pthread_t th;
		long t0;
		pid_t r, u;
		ssize_t n;

		s.opens = 0;
		st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
		for (int i = 0; i < OD_MAX_OBJS; i++)
			if (s.objs[i].anon_fd > 0)
				o = &s.objs[i];
		if (!check(st == 0 && o, "round %d: mount, object open (status %d)", round, st))
			break;
		/* Hand fd A to the closing thread; the server forgets it. */
		fd_a = o->anon_fd;
		id_a = o->id;
		close(o->blob_fd);
		o->anon_fd = 0;
		close_started = close_done = 0;
		t0 = now_ms();
		pthread_create(&th, NULL, closer, NULL);
		if (knob) {
			/* close(A) is in the release, asleep in the delay. */
			while (!__atomic_load_n(&close_started, __ATOMIC_SEQ_CST) &&
			       now_ms() - t0 < 10000)
				usleep(1000);
			check(od_wait_task_state(closer_tid, "DS", 10000) &&
			      !__atomic_load_n(&close_done, __ATOMIC_SEQ_CST),
			      "round %d: close(A) asleep in the release", round);
		} else {
			check(join_within(th, 10000), "round %d: close(A) returned", round);
		}

		/* A READ for an uncached range finds the object closed. */
		{
			char cmd[256];

			snprintf(cmd, sizeof(cmd), "cat %s/%s >/dev/null", MNT, files[round]);
			r = start_sh(cmd);
		}
		n = dev_wait_msg(dev, buf, sizeof(buf), 30000);
		if (n > 0 && msg->opcode == CACHEFILES_OP_OPEN) {
			struct cachefiles_open *op = (void *)msg->data;

			id_b = msg->object_id;
			if (!__atomic_load_n(&close_done, __ATOMIC_SEQ_CST))
				opens_in_window++;
			fcntl(op->fd, F_SETFD, FD_CLOEXEC);
		}
		check(id_b != 0 && id_b != id_a,
		      "round %d: the READ forced a reopen: OPEN with a new id (A %u, B %u, opcode %d)",
		      round, id_a, id_b, n > 0 ? (int)msg->opcode : -1);
		if (n > 0)
			od_answer(&s, msg);
		st = od_serve_until(&s, r, 60000);
		check(st == 0, "round %d: the reader got its data through B (status %d)", round, st);

		/* Unmount: its CLOSE is queued, unread, while close(A) sleeps. */
		u = start_sh("umount " MNT);
		st = dev_pollin(dev, 30000);
		if (st && !__atomic_load_n(&close_done, __ATOMIC_SEQ_CST))
			closes_in_window++;
		check(st, "round %d: the unmount queued a request", round);
		check(join_within(th, DELAY_MS + 20000), "round %d: close(A) returned (%ld ms)",
		      round, now_ms() - t0);
		n = dev_wait_msg(dev, buf, sizeof(buf), 5000);
		check(n > 0 && msg->opcode == CACHEFILES_OP_CLOSE && msg->object_id == id_b,
		      "round %d: the daemon gets the CLOSE, for B's id %u (got %s, opcode %d, id %u)",
		      round, id_b, n > 0 ? "one" : "none", n > 0 ? (int)msg->opcode : -1,
		      n > 0 ? msg->object_id : 0);
		if (n > 0 && msg->opcode == CACHEFILES_OP_CLOSE && msg->object_id == id_b)
			right_close++;
		if (n > 0)
			od_answer(&s, msg);
		st = od_serve_until(&s, u, 60000);
		check(st == 0, "round %d: unmount (status %d, %ld ms since close(A))",
		      round, st, now_ms() - t0);
		od_close_all(&s);
	}
	diag("reopen OPENs seen while close(A) was in the release: %lu of %d",
	     opens_in_window, ROUNDS);
	diag("unmount CLOSEs queued while close(A) was in the release: %lu of %d",
	     closes_in_window, ROUNDS);
	diag("CLOSEs received with B's id: %lu of %d", right_close, ROUNDS);
	if (rust) {
		check(opens_in_window > 0, "overlap: reopen OPENs while close(A) in the release: %lu",
		      opens_in_window);
		check(closes_in_window > 0,
		      "overlap: unmount CLOSEs queued while close(A) in the release: %lu",
		      closes_in_window);
		knob_set(0);
	}
	close(dev);
	for (int i = 0; i < 50 && (dev = dev_open()) == -EBUSY; i++)
		usleep(100000);
	check(dev >= 0, "the cache is freed: the devnode opens again");
	if (dev >= 0)
		close(dev);
	return od_race_end();
}
