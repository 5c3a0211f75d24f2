// SPDX-License-Identifier: GPL-2.0
/*
 * Lifetimes: the daemon killed while a reader waits for a READ (the reader
 * gets EIO, later reads fail, nobody hangs, the cache goes away), and the
 * devnode closed before the anonymous fds (the daemon exits, nothing sits in
 * D state).
 */
#include "odtest.h"

#define MNT "/mnt/lifetime"

static volatile sig_atomic_t drop_reads;

static void on_usr1(int sig)
{
	drop_reads = 1;
}

/*
 * A daemon in a child process. It serves everything until SIGUSR1, then
 * leaves READs unanswered. With close_devnode_after_ms, it closes the
 * devnode that long after the first OPEN but keeps its anonymous fds a
 * second longer, then exits.
 */
static pid_t start_daemon(const char *name, int ready_fd, int close_devnode_after_ms)
{
	pid_t pid = fork();

	if (pid == 0) {
		char buf[CACHEFILES_MSG_MAX_SIZE];
		struct cachefiles_msg *msg = (void *)buf;
		struct od_server s = { 0 };
		long close_at = 0;

		signal(SIGUSR1, on_usr1);
		s.dev = dev_open();
		if (s.dev < 0 || dev_bind(s.dev, name))
			_exit(1);
		if (write(ready_fd, "r", 1) != 1)
			_exit(1);
		for (;;) {
			if (close_at && now_ms() > close_at) {
				close(s.dev);
				sleep(1);
				_exit(0);
			}
			if (dev_read(s.dev, buf, sizeof(buf)) <= 0) {
				dev_pollin(s.dev, 50);
				continue;
			}
			if (msg->opcode == CACHEFILES_OP_READ && drop_reads)
				continue;
			if (msg->opcode == CACHEFILES_OP_OPEN && close_devnode_after_ms)
				close_at = now_ms() + close_devnode_after_ms;
			od_answer(&s, msg);
		}
	}
	return pid;
}

static int wait_ready(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&p, 1, 30000) == 1 && read(fd, &c, 1) == 1;
}

static int tasks_in_d_state(void)
{
	return sh_int("cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"D\"' | wc -l");
}

static int reopen_devnode(void)
{
	int dev, i;

	for (i = 0; i < 100 && (dev = dev_open()) == -EBUSY; i++)
		usleep(100000);
	if (dev >= 0)
		close(dev);
	return dev >= 0;
}

int main(void)
{
	int pipefd[2], st;
	pid_t d, m, r;

	ktap_plan(12);
	if (pipe(pipefd))
		return 1;

	d = start_daemon("lifetime-kill", pipefd[1], 0);
	check(wait_ready(pipefd[0]), "daemon bound the cache");
	m = start_mount("fsid=simple.img", MNT);
	st = wait_child(m, 60000);
	check(st == 0, "mount (status %d)", st);
	kill(d, SIGUSR1);
	usleep(200000);
	r = start_sh("cat " MNT "/big/two.bin >/dev/null");
	sleep(2);
	check(wait_child(r, 0) == -1, "the reader waits for its READ");
	kill(d, SIGKILL);
	wait_child(d, 10000);
	st = wait_child(r, 30000);
	check(st > 0 && st < 128, "daemon killed: the waiting reader fails (status %d)", st);
	r = start_sh("cat " MNT "/big/one.bin >/dev/null");
	st = wait_child(r, 30000);
	check(st > 0 && st < 128, "later reads fail at once (status %d)", st);
	r = start_sh("umount " MNT);
	st = wait_child(r, 30000);
	check(st == 0, "unmount after the daemon died (status %d)", st);
	check(reopen_devnode(), "the dead cache is freed: the devnode opens again");
	check(tasks_in_d_state() == 0, "nothing in D state");

	d = start_daemon("lifetime-close", pipefd[1], 1500);
	check(wait_ready(pipefd[0]), "second daemon bound");
	m = start_mount("fsid=simple.img", MNT);
	st = wait_child(d, 60000);
	check(st == 0, "daemon closed the devnode before its fds and exited (status %d)", st);
	st = wait_child(m, 30000);
	if (st == 0)
		system("umount " MNT " 2>/dev/null");
	check(st >= 0, "the mount returned (status %d), nobody hangs", st);
	check(reopen_devnode() && tasks_in_d_state() == 0,
	      "the devnode opens again and nothing is in D state");
	return ktap_finish();
}
