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
 * devnode is read only after close(A) returned. The reader opens its file
 * before the window and is let go by a pipe, and the unmount is umount2()
 * in a thread, so the window holds only the reopen, the read and the
 * unmount's CLOSE; once that CLOSE is queued the test writes 0 to the knob,
 * which ends the window (at the latest it ends after 12 s, under the
 * hung-task detector's 20 s). Without the knob the Rust variant fails. The C backend (no knob) runs the same sequence with
 * close(A) finished before the reader starts.
 */
#include "odtest.h"
#include <pthread.h>
#include <sys/syscall.h>

#define MNT "/mnt/race_release"
#define KNOB "/sys/kernel/debug/cachefiles_ondemand_rs/release_delay_ms"
/* Under the hung-task detector's 20 s: the delay is an uninterruptible sleep. */
#define DELAY_MS 12000
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

static volatile int umount_done, umount_ret;

static void *unmounter(void *arg)
{
	umount_ret = umount2(MNT, 0) < 0 ? -errno : 0;
	__atomic_store_n(&umount_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * The reader, a child: opens the file, says so, waits for the go, reads
 * it all and compares it with the tree. So the window holds only its read.
 */
static pid_t start_reader(const char *rel, int *opened, int *go)
{
	int to_parent[2], from_parent[2];
	pid_t pid;

	if (pipe2(to_parent, O_CLOEXEC) || pipe2(from_parent, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		static char got[1 << 16], want[1 << 16];
		struct pollfd p = { .fd = from_parent[0], .events = POLLIN };
		char path[256], ref[256], c;
		int fd, rfd;
		ssize_t n;

		for (int i = 3; i < 1024; i++)
			if (i != to_parent[1] && i != from_parent[0])
				close(i);
		snprintf(path, sizeof(path), "%s/%s", MNT, rel);
		snprintf(ref, sizeof(ref), "%s/%s", TREE, rel);
		fd = open(path, O_RDONLY);
		rfd = open(ref, O_RDONLY);
		if (fd < 0 || rfd < 0 || write(to_parent[1], "o", 1) != 1)
			_exit(20);
		if (poll(&p, 1, 60000) != 1 || read(from_parent[0], &c, 1) != 1)
			_exit(21);
		while ((n = read(fd, got, sizeof(got))) > 0)
			if (read(rfd, want, n) != n || memcmp(got, want, n))
				_exit(22);
		_exit(n == 0 && read(rfd, want, 1) == 0 ? 0 : 23);
	}
	close(to_parent[1]);
	close(from_parent[0]);
	*opened = to_parent[0];
	*go = from_parent[1];
	return pid;
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

int main(void)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;
	int rust = !strcmp(backend(), "rust");
	unsigned long opens_in_window = 0, closes_in_window = 0, right_close = 0;
	struct od_server s = { 0 };
	int dev, st, knob = 0;

	ktap_plan(3 + ROUNDS * 9 + (rust ? 3 : 0));
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
		int opened = -1, go = -1, joined = 0;
		pthread_t th, ut;
		long t0;
		ssize_t n;
		pid_t r;

		s.opens = 0;
		st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
		for (int i = 0; i < OD_MAX_OBJS; i++)
			if (s.objs[i].anon_fd > 0)
				o = &s.objs[i];
		if (!check(st == 0 && o, "round %d: mount, object open (status %d)", round, st))
			break;
		/* The reader has its file open before the window opens. */
		r = start_reader(files[round], &opened, &go);
		if (!check(r > 0 && od_serve_until_signal(&s, opened, 60000) == 'o',
			   "round %d: the reader opened %s", round, files[round]))
			break;
		/* Hand fd A to the closing thread; the server forgets it. */
		fd_a = o->anon_fd;
		id_a = o->id;
		close(o->blob_fd);
		o->anon_fd = 0;
		close_started = close_done = 0;
		if (knob && round > 0)
			knob = knob_set(DELAY_MS);
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
			joined = od_join_within(th, 10000);
			check(joined, "round %d: close(A) returned", round);
		}

		/* A READ for an uncached range finds the object closed. */
		if (write(go, "g", 1) != 1)
			break;
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
		umount_done = 0;
		pthread_create(&ut, NULL, unmounter, NULL);
		st = dev_pollin(dev, 30000);
		if (st && !__atomic_load_n(&close_done, __ATOMIC_SEQ_CST))
			closes_in_window++;
		check(st, "round %d: the unmount queued a request", round);
		/* The window's events happened: close(A) may go on. */
		if (knob)
			knob_set(0);
		if (!joined)
			joined = od_join_within(th, DELAY_MS + 20000);
		check(joined, "round %d: close(A) returned (%ld ms)", round, now_ms() - t0);
		n = dev_wait_msg(dev, buf, sizeof(buf), 5000);
		check(n > 0 && msg->opcode == CACHEFILES_OP_CLOSE && msg->object_id == id_b,
		      "round %d: the daemon gets the CLOSE, for B's id %u (got %s, opcode %d, id %u)",
		      round, id_b, n > 0 ? "one" : "none", n > 0 ? (int)msg->opcode : -1,
		      n > 0 ? msg->object_id : 0);
		if (n > 0 && msg->opcode == CACHEFILES_OP_CLOSE && msg->object_id == id_b)
			right_close++;
		if (n > 0)
			od_answer(&s, msg);
		for (long end = now_ms() + 60000; !umount_done && now_ms() < end;) {
			while ((n = dev_read(dev, buf, sizeof(buf))) > 0)
				od_answer(&s, msg);
			dev_pollin(dev, 20);
		}
		st = od_join_within(ut, 10000);
		check(st && umount_ret == 0, "round %d: unmount (%d, %ld ms since close(A))",
		      round, umount_ret, now_ms() - t0);
		od_close_all(&s);
		close(opened);
		close(go);
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
	od_check_freed(dev);
	return od_race_end();
}
