// SPDX-License-Identifier: GPL-2.0
/*
 * flush keeps its contract: the cache dies of I/O errors while READs are
 * pending, reported by several mounts at once, and then its devnode is
 * released, so the backend's flush runs several times, possibly
 * concurrently, from cachefiles' I/O-error paths (which hold directory
 * locks) and from the release. Each pending reader fails with EIO, each
 * failing mount returns, commands get EIO and nothing is left to read once
 * dead, the devnode is released and opens again, nothing is left in D
 * state. The test kernel has DEBUG_ATOMIC_SLEEP and lockdep: a flush that
 * sleeps, or drops the last reference to an object, where it may not, is a
 * splat that fails the run.
 */
#include "odtest.h"

#define MNT "/mnt/flush"
#define NMOUNTS 3

/* "I/O Error" lines cachefiles logged since the test began. */
static int io_errors(void)
{
	return sh_int("dmesg | sed -n '/cfod: flush begins/,$p' | grep -c 'I/O Error'");
}

int main(void)
{
	static const char *const files[] = { "big/one.bin", "big/two.bin" };
	char buf[CACHEFILES_MSG_MAX_SIZE], path[256], opts[128], target[64];
	struct cachefiles_msg *msg = (void *)buf;
	struct od_server s = { 0 };
	pid_t readers[2], mounts[NMOUNTS];
	int dev, st, pending = 0, mounts_failed = 0, readers_eio = 0, n;
	long end;

	ktap_plan(11);
	od_race_begin();
	system("echo 'cfod: flush begins' > /dev/kmsg");
	dev = dev_open();
	if (dev < 0 || dev_bind(dev, "flush")) {
		diag("cannot bind");
		return 1;
	}
	s.dev = dev;
	st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
	check(st == 0, "the image mounts (status %d)", st);

	/* Two READs read by the daemon and left unanswered. */
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", MNT, files[i]);
		readers[i] = start_read(path, 0, 4096);
		n = dev_wait_msg(dev, buf, sizeof(buf), 30000);
		if (n > 0 && msg->opcode == CACHEFILES_OP_READ)
			pending++;
	}
	check(pending == 2, "two READs pending (%d)", pending);

	/* Several mounts at once, each failing its lookups on injected I/O
	 * errors: every error kills the cache again and flushes.
	 */
	check(system("echo 2 > /proc/sys/cachefiles/error_injection") == 0,
	      "inject I/O errors");
	for (int i = 0; i < NMOUNTS; i++) {
		snprintf(opts, sizeof(opts), "fsid=flush%d.img", i);
		snprintf(target, sizeof(target), "%s%d", MNT, i);
		mounts[i] = start_mount(opts, target);
	}
	for (int i = 0; i < NMOUNTS; i++) {
		/* Answer any OPEN a mount gets before the cache dies: fail it. */
		end = now_ms() + 60000;
		while ((st = wait_child(mounts[i], 100)) == -1 && now_ms() < end) {
			n = dev_read(dev, buf, sizeof(buf));
			if (n > 0 && msg->opcode == CACHEFILES_OP_OPEN) {
				struct cachefiles_open *load = (void *)msg->data;

				dev_cmd(dev, "copen %u,%d", msg->msg_id, -ENOENT);
				close(load->fd);
			}
		}
		if (st > 0 && st < 128)
			mounts_failed++;
		else
			diag("mount %d: status %d", i, st);
	}
	check(mounts_failed == NMOUNTS, "every mount fails and returns (%d of %d)",
	      mounts_failed, NMOUNTS);
	n = io_errors();
	diag("I/O errors logged: %d", n);
	check(n >= 1, "the cache died of an I/O error (%d logged)", n);

	for (int i = 0; i < 2; i++) {
		st = wait_child(readers[i], 30000);
		readers_eio += st == EIO;
		if (st != EIO)
			diag("reader %d: status %d", i, st);
	}
	check(readers_eio == 2, "each pending reader fails with EIO (%d of 2)", readers_eio);
	check(dev_cmd(dev, "copen 1,0") == -EIO, "commands fail with EIO once dead");
	check(dev_read(dev, buf, sizeof(buf)) == 0, "nothing is left to read");
	system("echo 0 > /proc/sys/cachefiles/error_injection");

	/* The release flushes once more: an empty queue by now. */
	od_close_all(&s);
	st = wait_child(start_sh("umount " MNT), 30000);
	check(st == 0, "unmount works (status %d)", st);
	close(dev);
	end = now_ms() + 30000;
	while ((dev = dev_open()) == -EBUSY && now_ms() < end)
		usleep(20000);
	check(dev >= 0, "the devnode is released and opens again (%d)", dev);
	if (dev >= 0)
		close(dev);
	return od_race_end();
}
