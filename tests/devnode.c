// SPDX-License-Identifier: GPL-2.0
/*
 * The devnode in on-demand mode without any request: single opener, root
 * only, command parsing and its errnos, bind, idle read and poll, copen and
 * restore with nothing pending, and that closing it frees the cache. Then a
 * cache bound without "ondemand" (the mode cachefilesd uses): the patch must
 * not dispatch to any on-demand backend for it.
 *
 * "core:" marks the points that test code both backends share (the devnode
 * and its command parser in daemon.c, the patch's dispatch): they cannot
 * catch a backend bug.
 */
#include "odtest.h"

/*
 * The node is 0600 root, so the VFS would refuse with EACCES first: open it
 * up for the duration, so that the driver's own CAP_SYS_ADMIN check is what
 * refuses.
 */
static int open_as_nobody(void)
{
	pid_t pid;
	int ret;

	chmod("/dev/cachefiles", 0666);
	pid = fork();

	if (pid == 0) {
		int fd;

		/* Leaving uid 0 without keepcaps drops every capability. */
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(100);
		fd = open("/dev/cachefiles", O_RDWR);
		_exit(fd < 0 ? errno : 0);
	}
	ret = wait_child(pid, 10000);
	chmod("/dev/cachefiles", 0600);
	return ret;
}

/* close() of the devnode in a thread, so that a release that never returns
 * (a backend dispatched for a plain cache oopses under it) is a failed
 * point, not a test killed by its timeout. */
static void *closer(void *arg)
{
	close(*(int *)arg);
	return NULL;
}

int main(void)
{
	char big[8192], buf[CACHEFILES_MSG_MAX_SIZE];
	int dev, dev2, st;
	pid_t m;

	ktap_plan(33);
	dev = dev_open();
	if (!check(dev >= 0, "open /dev/cachefiles"))
		return 1;
	dev2 = dev_open();
	check(dev2 == -EBUSY, "core: second open: EBUSY (got %d)", dev2);
	st = open_as_nobody();
	check(st == EPERM, "core: open without CAP_SYS_ADMIN: EPERM (got %d)", st);
	check(dev_read(dev, buf, sizeof(buf)) == 0, "core: read before bind: 0");
	check(dev_cmd(dev, "copen 1,0") == -EOPNOTSUPP, "core: copen before bind: EOPNOTSUPP");
	check(dev_cmd(dev, "restore") == -EOPNOTSUPP, "core: restore before bind: EOPNOTSUPP");
	check(dev_cmd(dev, "frobnicate 1") == -EOPNOTSUPP, "core: unknown command: EOPNOTSUPP");
	check(dev_cmdn(dev, "tag a\0b", 7) == -EINVAL, "core: embedded NUL: EINVAL");
	memset(big, 'a', sizeof(big));
	memcpy(big, "tag ", 4);
	check(dev_cmdn(dev, big, 4096) == -EOPNOTSUPP, "core: PAGE_SIZE bytes: EOPNOTSUPP");
	check(dev_cmdn(dev, big, 4095) == 0, "core: PAGE_SIZE - 1 bytes accepted");
	check(dev_cmd(dev, "\ntag x") == -EINVAL, "core: leading newline: EINVAL");
	check(dev_cmd(dev, " tag x") == -EOPNOTSUPP, "core: leading space: EOPNOTSUPP");
	check(dev_cmd(dev, "bind ondemand") == -EINVAL, "core: bind without dir: EINVAL");
	check(dev_cmd(dev, "dir /cache") == 0 && dev_cmd(dev, "bind foo") == -EINVAL,
	      "core: bind foo: EINVAL");
	close(dev);
	dev = dev_open();
	check(dev >= 0 && dev_bind(dev, "devnode") == 0, "bind ondemand (fresh open)");
	check(dev_cmd(dev, "bind ondemand") == -EBUSY, "core: bind twice: EBUSY");
	check(!dev_pollin(dev, 0), "poll idle: no EPOLLIN");
	check(dev_read(dev, buf, sizeof(buf)) == 0, "read idle: 0");
	check(dev_read(dev, buf, 1) == 0, "read idle, 1-byte buffer: 0");
	check(dev_cmd(dev, "copen") == -EINVAL, "'copen': EINVAL");
	check(dev_cmd(dev, "copen 5") == -EINVAL, "'copen 5': EINVAL");
	check(dev_cmd(dev, "copen x,1") == -EINVAL, "'copen x,1': EINVAL");
	check(dev_cmd(dev, "copen 5,abc") == -EINVAL, "'copen 5,abc' (no such id): EINVAL");
	check(dev_cmd(dev, "copen 99,-1\n") == -EINVAL, "'copen 99,-1' (no such id): EINVAL");
	check(dev_cmd(dev, "restore") == 0, "restore with nothing pending: 0");
	close(dev);
	/* The cache is freed when nothing pins it, so the devnode is free. */
	for (int i = 0; i < 50 && (dev = dev_open()) == -EBUSY; i++)
		usleep(100000);
	check(dev >= 0, "reopen after close (the cache was freed)");
	check(dev >= 0 && dev_bind(dev, "devnode2") == 0, "bind again");
	close(dev);

	/* A cache not in on-demand mode: nothing reaches a backend. */
	for (int i = 0; i < 50 && (dev = dev_open()) == -EBUSY; i++)
		usleep(100000);
	system("rm -rf /cache/devnode-plain && mkdir -p /cache/devnode-plain");
	check(dev >= 0 && dev_cmd(dev, "dir /cache/devnode-plain") == 0 &&
	      dev_cmd(dev, "bind") == 0, "core: bind without ondemand");
	check(dev_cmd(dev, "copen 0,0") == -EOPNOTSUPP && dev_cmd(dev, "restore") == -EOPNOTSUPP,
	      "core: copen and restore on a cache not in on-demand mode: EOPNOTSUPP");
	/* The mount waits (killably) on the plain cache; the cache going
	 * away must end it. A backend dispatched for this cache would oops.
	 */
	m = start_mount("fsid=simple.img", "/mnt/devnode");
	st = wait_child(m, 2000);
	{
		pthread_t t;
		int closed = pthread_create(&t, NULL, closer, &dev) == 0 &&
			     od_join_within(t, 60000);

		if (!check(closed, "core: the plain cache's release returns within 60 s")) {
			st = od_d_state_scan();
			diag("the release hangs; %d tasks in D state", st);
			fflush(stdout);
			_exit(1);
		}
	}
	if (st < 0)
		st = wait_child(m, 60000);
	check(st > 0 && st < 128,
	      "core: an erofs mount over it fails, at the latest when the cache goes (status %d)", st);
	if (st == 0)
		umount("/mnt/devnode");
	if (st < 0)
		kill(m, SIGKILL);
	for (int i = 0; i < 50 && (dev = dev_open()) == -EBUSY; i++)
		usleep(100000);
	check(dev >= 0, "core: that cache is freed too: the devnode opens again (%d)", dev);
	if (dev >= 0)
		close(dev);
	st = od_d_state_scan();
	check(st == 0, "nothing left in D state (%d)", st);
	return ktap_finish();
}
