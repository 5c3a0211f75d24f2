// SPDX-License-Identifier: GPL-2.0
/*
 * Bind/close churn, with this program as the daemon. First, failing mounts
 * in a loop, each on a freshly bound cache: an OPEN refused by copen, a
 * devnode closed with the OPEN unanswered, and an image that is not erofs
 * (served correctly, refused by erofs). Every mount fails, none hangs, the
 * devnode can be opened again each time, no fd leaks; kmemleak at the end of
 * the boot checks the kernel side. Then the devnode released while other
 * threads wait on it: in epoll_wait() (the epoll entry sits on the devnode's
 * wait queue until the release removes it) and in a poll() loop, with a
 * request pending that made it readable.
 */
#include "odtest.h"
#include <pthread.h>
#include <sys/epoll.h>

#define MNT "/mnt/churn"
/* Rounds of each part: a multiple of 3 for the first (one per variant). */
#define ROUNDS 9
#define POLL_ROUNDS 6

/* Open the devnode, retrying while the previous cache is being released. */
static int reopen(void)
{
	int dev = -EBUSY;

	for (int i = 0; i < 100 && dev == -EBUSY; i++) {
		dev = dev_open();
		if (dev == -EBUSY)
			usleep(50000);
	}
	return dev;
}

static int failing_mounts(void)
{
	static char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;
	/* The errno each variant's mount gets: EIO for a failed OPEN
	 * (whatever its error) and for the release, EINVAL from erofs
	 * refusing the blob.
	 */
	static const int want[3] = { EIO, EIO, EINVAL };
	/* An OPEN refused by copen, or a devnode released with the OPEN read
	 * but unanswered: the lookup fails, and the mount sees EIO when its
	 * own read waited on the lookup, or ENOBUFS from fscache when the
	 * cookie had already failed by the time it asked (the core's choice,
	 * by timing; seen for the release on the race kernel with either
	 * backend, for the refusal on C's test boot once binds stopped
	 * forking a shell).
	 */
	static const int also[3] = { ENOBUFS, ENOBUFS, 0 };
	int enobufs = 0;
	int fds = own_fds(), failed = 0, hung = 0, opened = 0;

	for (int i = 0; i < ROUNDS; i++) {
		struct od_server s = { 0 };
		int dev = reopen(), st;
		pid_t m;

		if (dev < 0 || dev_bind(dev, "churn")) {
			diag("round %d: cannot open or bind (%d)", i, dev);
			break;
		}
		opened++;
		s.dev = dev;
		switch (i % 3) {
		case 0:	/* the daemon refuses the OPEN */
			m = start_mount("fsid=simple.img", MNT);
			if (dev_wait_msg(dev, buf, sizeof(buf), 30000) > 0) {
				close(((struct cachefiles_open *)msg->data)->fd);
				dev_cmd(dev, "copen %u,%d", msg->msg_id, -ENOENT);
			}
			st = wait_child(m, 30000);
			break;
		case 1:	/* the daemon goes away with the OPEN unanswered */
			m = start_mount("fsid=simple.img", MNT);
			if (dev_wait_msg(dev, buf, sizeof(buf), 30000) > 0)
				close(((struct cachefiles_open *)msg->data)->fd);
			close(dev);
			dev = -1;
			st = wait_child(m, 30000);
			break;
		default: /* served faithfully, but it is not an erofs image */
			m = start_mount("fsid=junk.img", MNT);
			st = od_serve_until(&s, m, 30000);
			break;
		}
		if (st == -1) {
			hung++;
			kill(m, SIGKILL);
			wait_child(m, 5000);
		} else if (st == want[i % 3]) {
			failed++;
		} else if (st == also[i % 3]) {
			failed++;
			enobufs++;
		} else {
			diag("round %d: the mount got status %d, not %s", i, st,
			     strerrorname_np(want[i % 3]));
		}
		od_close_all(&s);
		if (dev >= 0)
			close(dev);
	}
	check(opened == ROUNDS, "devnode opened and bound %d times (%d)", ROUNDS, opened);
	check(hung == 0, "no mount hung (%d)", hung);
	check(failed == ROUNDS,
	      "every mount failed with its errno: EIO or ENOBUFS (refused, released), EINVAL (not erofs) (%d of %d)",
	      failed, ROUNDS);
	diag("ENOBUFS instead of EIO in %d of %d rounds", enobufs, 2 * ROUNDS / 3);
	check(own_fds() == fds, "no fd leaked (%d, was %d)", own_fds(), fds);
	return 0;
}

struct waiter {
	int fd;			/* epoll fd, or the devnode for poll() */
	volatile int stop;
	volatile int events, nval, errors;
	/* Set once the release has run: the epoll_wait() calls begun after
	 * it (counted) must report nothing.
	 */
	volatile int armed, armed_calls, late;
};

static void *epoll_waiter(void *arg)
{
	struct waiter *w = arg;
	struct epoll_event ev;

	while (!w->stop) {
		int armed = __atomic_load_n(&w->armed, __ATOMIC_SEQ_CST);
		int n = epoll_wait(w->fd, &ev, 1, 20);

		if (n > 0)
			w->events++;
		else if (n < 0 && errno != EINTR)
			w->errors++;
		if (armed) {
			if (n > 0)
				w->late++;
			__atomic_add_fetch(&w->armed_calls, 1, __ATOMIC_SEQ_CST);
		}
	}
	return NULL;
}

static void *poll_waiter(void *arg)
{
	struct waiter *w = arg;

	while (!w->stop) {
		struct pollfd p = { .fd = w->fd, .events = POLLIN };

		if (poll(&p, 1, 20) < 0) {
			w->errors++;
		} else if (p.revents & POLLNVAL) {
			w->nval++;
			break;
		} else if (p.revents & POLLIN) {
			w->events++;
		}
	}
	return NULL;
}

static int release_under_waiters(void)
{
	int ready = 0, quiet = 0, errors = 0, nval = 0, failed = 0, opened = 0;
	int enobufs = 0;

	for (int i = 0; i < POLL_ROUNDS; i++) {
		struct waiter e = { 0 }, p = { 0 };
		struct epoll_event ev = { .events = EPOLLIN };
		pthread_t te, tp;
		int dev = reopen(), ep, st;
		pid_t m;

		if (dev < 0 || dev_bind(dev, "churn-poll"))
			break;
		opened++;
		ep = epoll_create1(EPOLL_CLOEXEC);
		epoll_ctl(ep, EPOLL_CTL_ADD, dev, &ev);
		e.fd = ep;
		p.fd = dev;
		pthread_create(&te, NULL, epoll_waiter, &e);
		pthread_create(&tp, NULL, poll_waiter, &p);
		/* An unread OPEN makes the devnode readable. */
		m = start_mount("fsid=simple.img", MNT);
		for (int t = 0; t < 1500 && (!e.events || !p.events); t++)
			usleep(20000);
		if (e.events && p.events)
			ready++;
		/* Release it under both waiters (the poll() thread's fd goes
		 * away with it; the file goes once its poll() returns).
		 */
		close(dev);
		st = wait_child(m, 30000);
		/* EIO, or ENOBUFS when fscache saw the cookie fail before the
		 * mount's read asked (the core's choice, by timing; as in
		 * failing_mounts() above).
		 */
		if (st == EIO || st == ENOBUFS) {
			failed++;
			enobufs += st == ENOBUFS;
		} else if (st != -1) {
			diag("round %d: the mount got status %d, not EIO or ENOBUFS", i, st);
		} else {
			kill(m, SIGKILL), wait_child(m, 5000);
		}
		/* The mount's failure came from the release, and the VFS takes
		 * the file off the epoll set before calling the release: every
		 * epoll_wait() begun from now on must report nothing.
		 */
		__atomic_store_n(&e.armed, 1, __ATOMIC_SEQ_CST);
		for (long end = now_ms() + 10000;
		     e.armed_calls < 5 && now_ms() < end;)
			usleep(5000);
		if (e.armed_calls >= 5 && e.late == 0)
			quiet++;
		else
			diag("round %d: %d epoll_wait() calls after the release, %d reported an event",
			     i, e.armed_calls, e.late);
		e.stop = p.stop = 1;
		pthread_join(te, NULL);
		pthread_join(tp, NULL);
		errors += e.errors + p.errors;
		nval += p.nval;
		close(ep);
	}
	check(opened == POLL_ROUNDS && ready == POLL_ROUNDS,
	      "epoll_wait() and poll() saw the pending OPEN (%d of %d rounds)", ready, opened);
	check(failed == POLL_ROUNDS, "the mount fails with EIO or ENOBUFS when the devnode is released (%d)",
	      failed);
	diag("ENOBUFS instead of EIO in %d of %d rounds", enobufs, POLL_ROUNDS);
	/* VFS behaviour on a closed fd, the same for any file. */
	check(quiet == POLL_ROUNDS && errors == 0,
	      "core: epoll_wait() begun after the release reports nothing, no call failed (%d, %d errors)",
	      quiet, errors);
	/* VFS behaviour, not cachefiles', and racy on SMP (the fd number can be
	 * reused before the thread polls again): reported, not a point.
	 */
	diag("the poll() loop ended with POLLNVAL in %d of %d rounds", nval, POLL_ROUNDS);
	return 0;
}

int main(void)
{
	int st;

	ktap_plan(8);
	signal(SIGPIPE, SIG_IGN);
	failing_mounts();
	release_under_waiters();
	st = od_d_state_scan();
	check(st == 0, "nothing left in D state (%d)", st);
	return ktap_finish();
}
