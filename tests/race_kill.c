// SPDX-License-Identifier: GPL-2.0
/*
 * race_kill: a reader killed while its READ is being completed. In each
 * run a reader waits for one page of big/two.bin (an uncached one); once
 * the daemon has read the READ it tells a killer thread (a pipe), which
 * SIGKILLs the reader while the daemon writes the data and issues
 * READ_COMPLETE. The reader gets the right data or dies of SIGKILL (its
 * killable wait ends in EINTR, which a killed process cannot report);
 * READ_COMPLETE returns 0 or EINVAL; EINVAL only if the reader died. The
 * runs where the kill returned after the READ was read and before
 * READ_COMPLETE returned are counted, and must not be 0. Odd runs write
 * the data before waking the killer, so the kill meets the ioctl alone.
 */
#include "odtest.h"
#include <pthread.h>

#define MNT "/mnt/race_kill"
#define FILE_REL "big/two.bin"
#define RUNS 24

static int kill_pipe[2];
static volatile pid_t target;
static volatile int killed;

static void *killer(void *arg)
{
	struct pollfd p = { .fd = kill_pipe[0], .events = POLLIN };
	char c;

	while (poll(&p, 1, 60000) == 1 && read(kill_pipe[0], &c, 1) == 1 && c == 'k') {
		kill(target, SIGKILL);
		__atomic_store_n(&killed, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

/* The reader: opens, says so, waits for the go, reads one page. */
static pid_t start_reader(off_t off, int *opened, int *go)
{
	int to_parent[2], from_parent[2];
	pid_t pid;

	if (pipe2(to_parent, O_CLOEXEC) || pipe2(from_parent, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		static char got[4096], want[4096];
		struct pollfd p = { .fd = from_parent[0], .events = POLLIN };
		int fd = open(MNT "/" FILE_REL, O_RDONLY | O_CLOEXEC);
		int ref = open(TREE "/" FILE_REL, O_RDONLY | O_CLOEXEC);
		char c;

		/* Not the devnode nor the anonymous fds: only the pipes. */
		for (int i = 3; i < 1024; i++)
			if (i != to_parent[1] && i != from_parent[0] && i != fd && i != ref)
				close(i);
		if (fd < 0 || ref < 0)
			_exit(20);
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
		if (write(to_parent[1], "o", 1) != 1)
			_exit(21);
		if (poll(&p, 1, 30000) != 1 || read(from_parent[0], &c, 1) != 1)
			_exit(22);
		if (pread(fd, got, sizeof(got), off) != sizeof(got))
			_exit(errno == EINTR ? 23 : 24);
		if (pread(ref, want, sizeof(want), off) != sizeof(want) ||
		    memcmp(got, want, sizeof(got)))
			_exit(25);
		_exit(0);
	}
	close(to_parent[1]);
	close(from_parent[0]);
	*opened = to_parent[0];
	*go = from_parent[1];
	return pid;
}

int main(void)
{
	static char data[1 << 20] __attribute__((aligned(4096)));
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;
	unsigned long overlap = 0, got_data = 0, died = 0, rc0 = 0, rc_inval = 0;
	unsigned long bad_status = 0, bad_rc = 0, inconsistent = 0, runs = 0;
	struct od_server s = { 0 };
	pthread_t th;
	int dev, st;
	pid_t u;

	ktap_plan(9);
	od_race_begin();
	dev = dev_open();
	if (!check(dev >= 0 && dev_bind(dev, "race_kill") == 0, "bind"))
		return 1;
	s.dev = dev;
	st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
	if (!check(st == 0, "mount (status %d)", st))
		return 1;
	if (pipe2(kill_pipe, O_CLOEXEC))
		return 1;
	pthread_create(&th, NULL, killer, NULL);

	for (int run = 0; run < RUNS; run++) {
		int opened, go, rc = 1, k;
		struct cachefiles_read *rd;
		struct od_obj *o;
		ssize_t n;
		pid_t r;

		/* A page of its own per run: 96 KiB apart, never cached. */
		r = start_reader((off_t)run * 96 * 1024, &opened, &go);
		if (r < 0 || od_serve_until_signal(&s, opened, 30000) != 'o') {
			diag("run %d: the reader did not open the file", run);
			bad_status++;
			break;
		}
		killed = 0;
		target = r;
		if (write(go, "g", 1) != 1)
			break;
		n = dev_wait_msg(dev, buf, sizeof(buf), 30000);
		if (n <= 0 || msg->opcode != CACHEFILES_OP_READ) {
			diag("run %d: no READ (n %zd, opcode %d)", run, n,
			     n > 0 ? (int)msg->opcode : -1);
			bad_status++;
			break;
		}
		runs++;
		rd = (void *)msg->data;
		o = od_find(&s, msg->object_id);
		if (run % 2 == 0 && write(kill_pipe[1], "k", 1) != 1)
			break;
		if (o) {
			unsigned long long off = rd->off, end = rd->off + rd->len;

			if (end > (unsigned long long)o->size)
				end = o->size;
			while (off < end) {
				size_t len = end - off > sizeof(data) ? sizeof(data) : end - off;
				ssize_t got = pread(o->blob_fd, data, len, off);

				if (got <= 0 || pwrite(o->anon_fd, data, got, off) != got)
					break;
				off += got;
			}
		}
		if (run % 2 == 1 && write(kill_pipe[1], "k", 1) != 1)
			break;
		if (o)
			rc = ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, msg->msg_id) < 0 ?
			     -errno : 0;
		k = __atomic_load_n(&killed, __ATOMIC_SEQ_CST);
		overlap += k;
		/* The kill is done before the reader is reaped (its pid freed). */
		for (long t = now_ms(); !__atomic_load_n(&killed, __ATOMIC_SEQ_CST) &&
		     now_ms() - t < 10000;)
			usleep(1000);
		st = od_serve_until(&s, r, 30000);
		diag("run %d: READ %u %llu@%llu, READ_COMPLETE %d, killed before it returned %d, reader status %d",
		     run, msg->msg_id, (unsigned long long)rd->len,
		     (unsigned long long)rd->off, rc, k, st);
		if (st == 0)
			got_data++;
		else if (st == 128 + SIGKILL)
			died++;
		else
			bad_status++;
		if (rc == 0)
			rc0++;
		else if (rc == -EINVAL)
			rc_inval++;
		else
			bad_rc++;
		if ((rc == -EINVAL && st != 128 + SIGKILL) || (st == 0 && rc != 0))
			inconsistent++;
		close(opened);
		close(go);
	}
	close(kill_pipe[1]);
	pthread_join(th, NULL);
	diag("%lu runs: reader got data %lu, died of SIGKILL %lu; READ_COMPLETE 0 %lu, EINVAL %lu",
	     runs, got_data, died, rc0, rc_inval);
	check(runs == RUNS && bad_status == 0,
	      "every reader got the right data or died of SIGKILL (%lu of %d runs, %lu other)",
	      runs, RUNS, bad_status);
	check(runs && bad_rc == 0, "every READ_COMPLETE returned 0 or EINVAL (%lu other)", bad_rc);
	check(inconsistent == 0,
	      "EINVAL only for a dead reader, data only after a READ_COMPLETE of 0 (%lu not)",
	      inconsistent);
	check(overlap > 0, "overlap: kills that landed between reading the READ and READ_COMPLETE returning: %lu of %lu",
	      overlap, runs);
	u = start_sh("umount " MNT);
	st = od_serve_until(&s, u, 60000);
	check(st == 0, "unmount (status %d)", st);
	od_close_all(&s);
	od_check_freed(dev);
	return od_race_end();
}
