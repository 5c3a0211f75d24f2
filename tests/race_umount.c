// SPDX-License-Identifier: GPL-2.0
/*
 * race_umount: the unmount itself raced, on a multi-device mount (two
 * objects, two CLOSEs). The unmount runs in a thread of this process
 * (umount2), so "during the unmount" is exact: from before the syscall to
 * after it returned.
 *
 * Part 1: threads hammer pwrite and llseek on (dups of) both anonymous
 * fds while another thread unmounts and the daemon answers the CLOSEs.
 * Every call returns success or exactly ENOBUFS, an fd never succeeds again
 * after its ENOBUFS, and both fds end withdrawn (the second object may be
 * withdrawn after umount2() returned: fscache does not wait for it; the
 * loops go on until the daemon had both CLOSEs). Counted: calls that got
 * ENOBUFS after a success in the same loop, and those of them that
 * returned while the unmount was in flight (the overlap, must be > 0).
 * "The unmount" here is its whole teardown: from before umount2() until
 * the daemon answered the last CLOSE. fscache withdraws the cookies from a
 * worker after umount2() has returned, so an fd turns ENOBUFS only after
 * its CLOSE was read; the daemon holds the second CLOSE until a loop saw
 * the first fd withdrawn, which makes the overlap an event, not luck. How
 * many of them came before umount2() itself returned is only reported.
 *
 * Part 2 (reference item 3, strict form): a thread writes "restore" in a
 * loop while the filesystem is unmounted with its CLOSEs pending: each time
 * the devnode shows a request (POLLIN), the daemon lets 20 more restores go
 * by before reading it. Every restore returns 0. Counted: restores issued
 * and returned while umount2() was in flight (must be > 0).
 */
#include "odtest.h"
#include <pthread.h>

#define MNT "/mnt/race_umount"
#define ROUNDS 3
#define NFD 2

static volatile int umount_running, umount_done, umount_ret, stop, all_closed, teardown;

static void *unmounter(void *arg)
{
	__atomic_store_n(&umount_running, 1, __ATOMIC_SEQ_CST);
	umount_ret = umount2(MNT, 0) < 0 ? -errno : 0;
	__atomic_store_n(&umount_running, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&umount_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

struct hammer {
	int seek;	/* llseek, else pwrite */
	int fd[NFD];
	char *page[NFD];
	unsigned long calls, ok, enobufs_after_ok, bad, ok_after_enobufs, in_umount2;
	volatile unsigned long during;
	int had_ok[NFD], had_enobufs[NFD], bad_errno;
};

static void *hammer(void *arg)
{
	struct hammer *h = arg;
	unsigned long after = 0;

	/*
	 * Until every fd was seen withdrawn, and then some. The withdrawal of
	 * an object can follow umount2()'s return (fscache relinquishes its
	 * cookies without waiting), so the bound counts from the last CLOSE.
	 */
	for (unsigned long i = 0; !stop && after < 5000; i++) {
		int k = i % NFD, ok, err;

		if (h->seek)
			ok = lseek(h->fd[k], 0, SEEK_SET) == 0;
		else
			ok = pwrite(h->fd[k], h->page[k], 4096, 0) == 4096;
		err = ok ? 0 : errno;
		/*
		 * Read after the call returned: 1 means the teardown (or
		 * umount2() itself) had not ended.
		 */
		int running = __atomic_load_n(&teardown, __ATOMIC_SEQ_CST);
		int in_umount2 = __atomic_load_n(&umount_running, __ATOMIC_SEQ_CST);

		h->calls++;
		if (ok) {
			__atomic_add_fetch(&h->ok, 1, __ATOMIC_SEQ_CST);
			h->had_ok[k] = 1;
			h->ok_after_enobufs += h->had_enobufs[k];
		} else if (err == ENOBUFS) {
			h->had_enobufs[k] = 1;
			if (h->had_ok[k]) {
				h->enobufs_after_ok++;
				__atomic_add_fetch(&h->during, running, __ATOMIC_SEQ_CST);
				h->in_umount2 += in_umount2;
			}
		} else {
			h->bad++;
			h->bad_errno = err;
		}
		if (__atomic_load_n(&all_closed, __ATOMIC_SEQ_CST)) {
			int all = 1;

			for (int j = 0; j < NFD; j++)
				all &= h->had_enobufs[j];
			after++;
			if (all && after >= 50)
				break;
		}
	}
	return NULL;
}

static volatile unsigned long restores, restores_during, restore_bad;
static int restore_err;

static void *restorer(void *arg)
{
	int dev = *(int *)arg;

	while (!stop) {
		int before = __atomic_load_n(&umount_running, __ATOMIC_SEQ_CST);
		int ret = dev_cmd(dev, "restore");
		int after = __atomic_load_n(&umount_running, __ATOMIC_SEQ_CST);

		if (ret) {
			restore_bad++;
			restore_err = ret;
		}
		if (before && after)
			restores_during++;
		__atomic_add_fetch(&restores, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

/* Wait (bounded) until *counter reaches at least want. */
static int wait_count(volatile unsigned long *counter, unsigned long want, int timeout_ms)
{
	long end = now_ms() + timeout_ms;

	while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) < want) {
		if (now_ms() > end)
			return 0;
		usleep(500);
	}
	return 1;
}

static int mount_two(struct od_server *s)
{
	int st, n = 0;

	s->opens = s->closes = 0;
	st = od_serve_until(s, start_mount("fsid=meta.img,device=blob.img", MNT), 60000);
	/* blob.img's OPEN may come after the mount returned. */
	if (st == 0)
		od_serve_opens(s, NFD, 60000);
	for (int i = 0; i < OD_MAX_OBJS; i++)
		n += s->objs[i].anon_fd > 0;
	return st == 0 && n == NFD;
}

/*
 * Answer the devnode until the unmount thread is done and both CLOSEs came;
 * bounded. Before reading a pending request: with restores_per_request, let
 * that many restores go by; with withdrawn, once a CLOSE was answered (its
 * object withdrawn), wait for the loops to have seen ENOBUFS while the
 * unmount waits for this next request.
 */
static int serve_until_umounted(struct od_server *s, int restores_per_request,
				volatile unsigned long *withdrawn)
{
	char buf[CACHEFILES_MSG_MAX_SIZE];
	long end = now_ms() + 60000;

	while (!__atomic_load_n(&umount_done, __ATOMIC_SEQ_CST) || s->closes < NFD) {
		if (now_ms() > end)
			return 0;
		if (!dev_pollin(s->dev, 20))
			continue;
		if (restores_per_request &&
		    !wait_count(&restores, restores + restores_per_request, 10000))
			return 0;
		if (withdrawn && s->closes > 0)
			wait_count(withdrawn, 1, 5000);
		if (dev_read(s->dev, buf, sizeof(buf)) > 0)
			od_answer(s, (void *)buf);
	}
	__atomic_store_n(&all_closed, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&teardown, 0, __ATOMIC_SEQ_CST);
	return 1;
}

int main(void)
{
	unsigned long tot_enobufs_after_ok = 0, tot_during = 0, tot_bad = 0, tot_back = 0;
	unsigned long tot_withdrawn = 0, tot_restores_during = 0, tot_restores = 0;
	struct od_server s = { 0 };
	pthread_t th[2], ut;
	int dev;

	ktap_plan(8 + ROUNDS * 8);
	od_race_begin();
	dev = dev_open();
	if (!check(dev >= 0 && dev_bind(dev, "race_umount") == 0, "bind"))
		return 1;
	s.dev = dev;

	/* Part 1: pwrite and llseek loops through the unmount. */
	for (int round = 0; round < ROUNDS; round++) {
		struct hammer h[2] = { { .seek = 0 }, { .seek = 1 } };
		int k = 0, ok;

		if (!check(mount_two(&s), "1.%d: multi-device mount, two objects", round))
			break;
		for (int i = 0; i < OD_MAX_OBJS && k < NFD; i++) {
			struct od_obj *o = &s.objs[i];

			if (o->anon_fd <= 0)
				continue;
			for (int j = 0; j < 2; j++) {
				h[j].fd[k] = fcntl(o->anon_fd, F_DUPFD_CLOEXEC, 0);
				if (posix_memalign((void **)&h[j].page[k], 4096, 4096) ||
				    pread(o->blob_fd, h[j].page[k], 4096, 0) != 4096)
					return 1;
			}
			k++;
		}
		stop = umount_done = umount_running = all_closed = teardown = 0;
		for (int j = 0; j < 2; j++)
			pthread_create(&th[j], NULL, hammer, &h[j]);
		/* The loops are going before the unmount starts. */
		ok = wait_count(&h[0].ok, 1, 10000) && wait_count(&h[1].ok, 1, 10000);
		__atomic_store_n(&teardown, 1, __ATOMIC_SEQ_CST);
		pthread_create(&ut, NULL, unmounter, NULL);
		ok = serve_until_umounted(&s, 0, &h[0].during) && ok;
		__atomic_store_n(&teardown, 0, __ATOMIC_SEQ_CST);
		ok = od_join_within(ut, 10000) && ok;
		check(ok && umount_ret == 0, "1.%d: unmount with the loops running (%d)",
		      round, umount_ret);
		if (!od_join_within(th[0], 30000) || !od_join_within(th[1], 30000)) {
			stop = 1;
			od_join_within(th[0], 10000);
			od_join_within(th[1], 10000);
		}
		for (int j = 0; j < 2; j++) {
			diag("1.%d %s: %lu calls, %lu ok, %lu ENOBUFS after ok, %lu of them during the unmount (%lu before umount2() returned), %lu other (errno %d)",
			     round, h[j].seek ? "llseek" : "pwrite", h[j].calls, h[j].ok,
			     h[j].enobufs_after_ok, h[j].during, h[j].in_umount2, h[j].bad,
			     h[j].bad_errno);
			tot_enobufs_after_ok += h[j].enobufs_after_ok;
			tot_during += h[j].during;
			tot_bad += h[j].bad;
			tot_back += h[j].ok_after_enobufs;
			for (int i = 0; i < NFD; i++) {
				tot_withdrawn += h[j].had_enobufs[i];
				close(h[j].fd[i]);
				free(h[j].page[i]);
			}
		}
		check(h[0].bad == 0 && h[1].bad == 0,
		      "1.%d: every pwrite and llseek returned success or ENOBUFS", round);
		check(h[0].ok_after_enobufs + h[1].ok_after_enobufs == 0,
		      "1.%d: no success on an fd after its ENOBUFS", round);
		od_close_all(&s);
	}
	check(tot_bad == 0 && tot_back == 0 && tot_withdrawn == ROUNDS * 2 * NFD,
	      "1: every fd ended withdrawn (ENOBUFS) in both loops (%lu of %d)",
	      tot_withdrawn, ROUNDS * 2 * NFD);
	diag("1: ENOBUFS after a success in the same loop: %lu", tot_enobufs_after_ok);
	check(tot_enobufs_after_ok > 0, "1: loops saw their fds withdrawn (%lu)",
	      tot_enobufs_after_ok);
	check(tot_during > 0,
	      "1: overlap: ENOBUFS after success while the unmount (umount2() to the last CLOSE) was in flight: %lu",
	      tot_during);

	/* Part 2: restore in a loop through the unmount, CLOSEs pending. */
	for (int round = 0; round < ROUNDS; round++) {
		unsigned long r0, d0;
		int ok;

		if (!check(mount_two(&s), "2.%d: multi-device mount, two objects", round))
			break;
		stop = umount_done = umount_running = 0;
		r0 = restores;
		d0 = restores_during;
		pthread_create(&th[0], NULL, restorer, &dev);
		ok = wait_count(&restores, r0 + 1, 10000);
		pthread_create(&ut, NULL, unmounter, NULL);
		ok = serve_until_umounted(&s, 20, NULL) && ok;
		ok = od_join_within(ut, 10000) && ok;
		check(ok && umount_ret == 0, "2.%d: unmount with restore looping (%d)",
		      round, umount_ret);
		stop = 1;
		check(od_join_within(th[0], 10000), "2.%d: the restore loop stopped", round);
		diag("2.%d: %lu restores, %lu while umount2() was in flight, %lu CLOSEs answered",
		     round, restores - r0, restores_during - d0, s.closes);
		check(s.closes == NFD, "2.%d: both CLOSEs reached the daemon (%lu)", round, s.closes);
		tot_restores_during += restores_during - d0;
		tot_restores += restores - r0;
		od_close_all(&s);
	}
	check(restore_bad == 0, "2: every restore returned 0 (%lu did not, last %d)",
	      restore_bad, restore_err);
	check(tot_restores_during > 0,
	      "2: overlap: restores issued and returned while umount2() was in flight: %lu of %lu",
	      tot_restores_during, tot_restores);

	od_check_freed(dev);
	return od_race_end();
}
