// SPDX-License-Identifier: GPL-2.0
/*
 * flush keeps its contract (issue 11 item 5): the backend's flush, which
 * cachefiles_io_error() calls every time an I/O error is reported on an
 * on-demand cache, fails every pending request once and is harmless when
 * called again on a dead, empty queue.
 *
 * The I/O errors are injected (CONFIG_CACHEFILES_ERROR_INJECTION, "2": every
 * injected read and write point returns EIO), on paths that call
 * cachefiles_io_error() on 6.12:
 *   - cachefiles_look_up_object() ("Lookup failed"): a cookie new to a
 *     volume that already exists, i.e. a second image in a domain (a new
 *     volume's lookup errors only fail the volume, nothing is flushed, and
 *     once the cache is stopped fscache refuses further lookups, so exactly
 *     one such error is reported);
 *   - cachefiles_set_object_xattr() ("Failed to set xattr ... [o=...]"),
 *     when each object created by this test is withdrawn at unmount, on the
 *     dead cache: one more flush per object, after the first.
 * Before the first error: two READs read by the daemon and held (one per
 * mount, readahead off), and an OPEN left unread (a mount in its own
 * volume). The flush must fail all three: the readers and that mount
 * return, the held READs are gone from the queue (READ_COMPLETE: EINVAL),
 * nothing is left to read. Then the unmounts flush again, two of them at
 * once, and the devnode's release once more; the cache is freed.
 *
 * The flushes are counted by the kernel log: each "CacheFiles: I/O Error"
 * line is one cachefiles_io_error(), which calls the backend's flush in
 * on-demand mode (kernel/patches/0001). The test kernel has
 * DEBUG_ATOMIC_SLEEP, lockdep and KASAN: a flush that sleeps where it may
 * not, or completes a request twice, is a splat that fails the run.
 */
#include "odtest.h"

#define MA "/mnt/flush-a"
#define MB "/mnt/flush-b"
#define MC "/mnt/flush-c"
#define MD "/mnt/flush-d"

/* The cookie (blob) name of each object, from its OPEN. */
static char names[OD_MAX_OBJS][64];
static unsigned int name_ids[OD_MAX_OBJS];
static int nnames;

static void seen(struct cachefiles_msg *m)
{
	if (m->opcode == CACHEFILES_OP_OPEN && nnames < OD_MAX_OBJS) {
		name_ids[nnames] = m->object_id;
		open_cookie(m, names[nnames++], sizeof(names[0]));
	}
}

static const char *name_of(unsigned int object_id)
{
	for (int i = nnames - 1; i >= 0; i--)
		if (name_ids[i] == object_id)
			return names[i];
	return "?";
}

/* Lines of cachefiles' log since the test began that contain what. */
static int logged(const char *what)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd),
		 "dmesg | sed -n '/cfod: flush begins/,$p' | grep -c 'CacheFiles: I/O Error.*%s'",
		 what);
	return sh_int(cmd);
}

/* Poll the log until it shows at least n such lines (or 30 s); the count. */
static int logged_at_least(const char *what, int n)
{
	long end = now_ms() + 30000;
	int got;

	while ((got = logged(what)) < n && now_ms() < end)
		usleep(200000);
	return got;
}

/* Never leave the injection on for the tests after this one. */
static void injection_off(void)
{
	system("echo 0 > /proc/sys/cachefiles/error_injection");
}

int main(void)
{
	static const char *const rpaths[] = { MA "/mid/m4.bin", MB "/mid/m4.bin" };
	static const char *const data_of[] = { "simple.img", "blob.img" };
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;
	struct od_server s = { 0 };
	unsigned int held[2] = { 0, 0 }, held_obj[2] = { ~0U, ~0U };
	int dev, st, n, ok, got;
	pid_t readers[2], mc, md, ua, ub;
	long end;

	ktap_plan(18);
	od_race_begin();
	atexit(injection_off);
	system("echo 'cfod: flush begins' > /dev/kmsg");
	dev = od_open_bound(&s, "flush");
	if (dev < 0)
		return 1;
	s.seen = seen;

	/* Two mounts in one domain: volume erofs,fl; objects simple.img,
	 * meta.img, blob.img. */
	st = od_serve_until(&s, start_mount("fsid=simple.img,domain_id=fl", MA), 180000);
	n = od_serve_until(&s, start_mount("fsid=meta.img,device=blob.img,domain_id=fl", MB), 180000);
	/* blob.img's OPEN may come after the mount returned. */
	od_serve_opens(&s, 3, 60000);
	check(st == 0 && n == 0 && s.opens == 3,
	      "two mounts in domain fl served (status %d, %d; %lu OPENs)", st, n, s.opens);

	/*
	 * A data READ per mount, read by the daemon and held. The file's
	 * first page is read first (served), so its inode and chunk indexes
	 * are cached and the held READ is for data: a failed data read is
	 * read again, a failed metadata read is not (the reader's errno
	 * differs). Readahead off: one READ per reader.
	 */
	got = 0;
	for (int i = 0; i < 2; i++) {
		st = od_serve_until(&s, start_read_random(rpaths[i], 0, 4096), 60000);
		readers[i] = start_read_random(rpaths[i], 8192, 4096);
		n = dev_wait_msg(dev, buf, sizeof(buf), 60000);
		if (st == 0 && n > 0 && msg->opcode == CACHEFILES_OP_READ &&
		    od_find(&s, msg->object_id) && !strcmp(name_of(msg->object_id), data_of[i])) {
			held[i] = msg->msg_id;
			held_obj[i] = msg->object_id;
			got++;
		}
		diag("%s: held READ msg %u of object %u (%s)", rpaths[i], msg->msg_id,
		     msg->object_id, name_of(msg->object_id));
	}
	ok = got == 2 && wait_child(readers[0], 0) == -1 && wait_child(readers[1], 0) == -1;
	check(ok, "a data READ per mount (simple.img, blob.img) read and held, their readers wait (%d)",
	      got);

	/* An OPEN left unread: a mount in a volume of its own. */
	md = start_mount("fsid=junk.img", MD);
	check(dev_pollin(dev, 120000) && wait_child(md, 0) == -1,
	      "a third mount waits for its OPEN, queued and unread");

	check(system("echo 2 > /proc/sys/cachefiles/error_injection") == 0, "inject I/O errors");
	mc = start_mount("fsid=meta2.img,domain_id=fl", MC);
	st = wait_child(mc, 60000);
	check(st == ENOBUFS, "a new cookie in domain fl: its lookup hits the error, the mount fails in fscache: ENOBUFS (status %d)",
	      st);
	if (st < 0)
		kill(mc, SIGKILL);
	n = logged_at_least("Lookup failed", 1);
	check(n == 1 && logged("") == 1,
	      "the cache died of one I/O error, in the lookup: one flush (%d, %d in all)", n,
	      logged(""));

	/* What the flush must have failed. */
	got = 0;
	for (int i = 0; i < 2; i++) {
		/*
		 * The READ fails with EIO; the page is then read again and
		 * fscache refuses that on the stopped cache: ENOBUFS (as in
		 * edge phase I). A READ left pending keeps its reader waiting.
		 */
		st = wait_child(readers[i], 60000);
		got += st == ENOBUFS;
		if (st != ENOBUFS)
			diag("reader %d: status %d", i, st);
		if (st < 0)
			kill(readers[i], SIGKILL);
	}
	check(got == 2, "each reader of a held READ returns: ENOBUFS (%d of 2)", got);
	got = 0;
	for (int i = 0; i < 2; i++) {
		struct od_obj *o = od_find(&s, held_obj[i]);

		errno = 0;
		if (o && ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, held[i]) < 0 && errno == EINVAL)
			got++;
	}
	check(got == 2, "the held READs were flushed: READ_COMPLETE of each gets EINVAL (%d of 2)", got);
	st = wait_child(md, 60000);
	/*
	 * A failed OPEN gives the mount EIO, or ENOBUFS when the cookie had
	 * failed before the mount's first read asked (the core's choice by
	 * timing, copen.c).
	 */
	if (st == ENOBUFS)
		diag("the third mount: ENOBUFS (the cookie had failed before its read)");
	check(st == EIO || st == ENOBUFS,
	      "the unread OPEN was flushed: its mount fails, EIO or ENOBUFS (status %d)", st);
	if (st < 0)
		kill(md, SIGKILL);
	check(dev_read(dev, buf, sizeof(buf)) == 0, "nothing is left to read");
	check(dev_cmd(dev, "copen 1,0") == -EIO, "core: commands fail with EIO once dead");

	/*
	 * Flush again, on the dead cache: both unmounts at once, each object
	 * withdrawn fails to set its xattr (injected) and reports an I/O
	 * error, i.e. one more flush per object (3).
	 */
	ua = start_cmd("umount " MA);
	ub = start_cmd("umount " MB);
	st = wait_child(ua, 60000);
	n = wait_child(ub, 60000);
	check(st == 0 && n == 0, "both mounts unmount, at once (status %d, %d)", st, n);
	n = logged_at_least("Failed to set xattr with error -5 \\[o=", 3);
	check(n == 3, "each of the 3 objects withdrawn reports an I/O error: 3 more flushes (%d)", n);
	check(dev_read(dev, buf, sizeof(buf)) == 0, "still nothing to read after them");
	/* Off before the release: the unbind would otherwise report errors
	 * for any volume not yet freed. */
	system("echo 0 > /proc/sys/cachefiles/error_injection");

	/* The release flushes once more; the cache is freed. */
	od_close_all(&s);
	close(dev);
	end = now_ms() + 30000;
	while ((dev = dev_open()) == -EBUSY && now_ms() < end)
		usleep(20000);
	check(dev >= 0, "the devnode is released and opens again: the cache was freed (%d)", dev);
	if (dev >= 0)
		close(dev);
	n = logged("");
	check(n == 4, "I/O errors reported in all: 4, as counted above (%d)", n);
	return od_race_end();
}
