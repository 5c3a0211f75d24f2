// SPDX-License-Identifier: GPL-2.0
/*
 * OPEN requests, copen and the daemon's side of the devnode, with the test
 * acting as the daemon: the message contents and length (a buffer one byte
 * short, one of exactly the length), an unmapped buffer, every malformed or
 * misplaced copen and the errno each gives the mount, stale and cyclic
 * message ids (reference group 7), an anonymous fd closed before copen, and
 * the same in the reopen case, where the READ must not be skipped forever
 * (group 4) and READ_COMPLETE with the OPEN's id is refused (group 6);
 * wake-ups of a daemon asleep in poll() (a new request, a copen that makes a
 * held-back READ readable, restore); fair, cyclic selection after restore.
 *
 * Sizes and ids come from the protocol: the length from the keys, the image
 * size from stat, each id from the message that carried it.
 */
#include "odtest.h"

#define MNT "/mnt/copen"
#define VKEY "erofs,simple.img"
#define CKEY "simple.img"
/* The length of the OPEN for simple.img, from the keys it carries. */
#define OPEN_LEN (sizeof(struct cachefiles_msg) + sizeof(struct cachefiles_open) + \
		  sizeof(VKEY) + strlen(CKEY))
/*
 * A daemon asleep in poll() must be woken before this: a missing wake-up
 * shows as the timeout (no POLLIN). Long, because under TCG on a loaded host
 * a mount can take many seconds to send its OPEN.
 */
#define POLL_LONG_MS 90000
/*
 * A poll() that times out still scans its fds once more before returning,
 * so a request queued without a wake-up is reported as POLLIN when the
 * timeout expires: only a return well before the timeout proves the
 * wake-up (the mutants without one returned after 89.9 s).
 */
#define woken(ms) ((ms) >= 0 && (ms) < POLL_LONG_MS - 5000)

static struct cachefiles_msg *msg;
static struct cachefiles_open *load;
static char buf[CACHEFILES_MSG_MAX_SIZE];
static long long img_size;

/* Start a mount and read its OPEN; the mount's pid, or -1. */
static pid_t mount_and_read_open(int dev, const char *what)
{
	pid_t m = start_mount("fsid=simple.img", MNT);
	ssize_t n = dev_wait_msg(dev, buf, sizeof(buf), 30000);

	if (!check(n > 0 && msg->opcode == CACHEFILES_OP_OPEN && msg->len == n,
		   "%s: read an OPEN", what)) {
		kill(m, SIGKILL);
		wait_child(m, 5000);
		return -1;
	}
	return m;
}

/*
 * The mount fails with errno want (the mount child exits with it). Whatever
 * the OPEN failed with (EFAULT, EINVAL, EBADFD, the daemon's errno), the
 * mount gets EIO on 6.12.117: the lookup failure is not passed on.
 */
/*
 * A failed OPEN fails the mount with EIO when the mount's first read was
 * already waiting on the lookup, or with ENOBUFS from fscache when the
 * cookie had failed before that read asked: the core's choice, by timing,
 * on either backend (seen under load on the SMP kernels). Either is the
 * failure; a hang or success is not.
 */
static void expect_mount_fails(pid_t m, int want, const char *what)
{
	int st = wait_child(m, 30000);

	if (want == EIO && st == ENOBUFS)
		diag("%s: ENOBUFS (the cookie had failed before the mount's read)", what);
	check(st == want || (want == EIO && st == ENOBUFS),
	      "%s: the mount fails with %s (status %d)", what,
	      want == EIO ? "EIO or ENOBUFS" : strerrorname_np(want), st);
	if (st < 0) {
		kill(m, SIGKILL);
		wait_child(m, 5000);
	}
}

/* The next message that is not a READ, answering... nothing: READs are
 * left pending. Returns the opcode read, or -1. */
static int next_msg(int dev)
{
	return dev_wait_msg(dev, buf, sizeof(buf), 30000) > 0 ? (int)msg->opcode : -1;
}

/* Register the object of the OPEN in buf with the in-test daemon and copen
 * it with the image's size, as od_answer() would. */
static void answer_open(struct od_server *s)
{
	od_answer(s, msg);
}

static int basics(int dev, struct od_server *s)
{
	unsigned int id1, id2, last;
	int fds, st, i, tried_ok;
	struct pollwait w;
	void *noaccess;
	char name[64];
	long woke, t0;
	pid_t m;

	/* A new request wakes a daemon asleep in poll(). */
	check(pollwait_start(&w, dev, POLL_LONG_MS), "poll() sleeps on an idle devnode");
	t0 = now_ms();
	m = start_mount("fsid=simple.img", MNT);
	woke = pollwait_end(&w, t0);
	check(woken(woke), "an OPEN wakes the daemon asleep in poll() (%ld ms)",
	      woke);
	check(dev_read(dev, buf, 8) == -EMSGSIZE, "8-byte buffer: EMSGSIZE");
	check(dev_read(dev, buf, OPEN_LEN - 1) == -EMSGSIZE,
	      "a buffer one byte shorter than the OPEN (%zu): EMSGSIZE", OPEN_LEN - 1);
	check(dev_pollin(dev, 0), "the request is still pending after EMSGSIZE");
	fds = own_fds();
	noaccess = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(dev_read(dev, noaccess, 4096) == -EFAULT, "OPEN into an unmapped buffer: EFAULT");
	check(own_fds() == fds, "no anonymous fd was installed (%d, was %d)", own_fds(), fds);
	expect_mount_fails(m, EIO, "after EFAULT");

	m = start_mount("fsid=simple.img", MNT);
	check(dev_pollin(dev, 30000) && dev_read(dev, buf, OPEN_LEN) == (ssize_t)OPEN_LEN &&
	      msg->opcode == CACHEFILES_OP_OPEN && msg->len == OPEN_LEN,
	      "a buffer of exactly the OPEN's length (%zu) gets it", OPEN_LEN);
	check(load->volume_key_size == sizeof(VKEY) && !memcmp(load->data, VKEY, sizeof(VKEY)),
	      "volume key is '" VKEY "' with its NUL");
	check(!strcmp(open_cookie(msg, name, sizeof(name)), CKEY) &&
	      load->cookie_key_size == strlen(CKEY), "cookie key is the blob name");
	check(msg->object_id > 0 && fcntl(load->fd, F_GETFD) >= 0,
	      "object id %u and a valid anonymous fd %u", msg->object_id, load->fd);
	id1 = msg->msg_id;
	check(dev_cmd(dev, "copen %u,abc", id1) == -EINVAL, "copen <id>,abc: EINVAL");
	close(load->fd);
	expect_mount_fails(m, EIO, "bad size");
	check(dev_cmd(dev, "copen %u,-1", id1) == -EINVAL, "stale copen of a finished id: EINVAL");

	m = mount_and_read_open(dev, "non-errno size");
	if (m < 0)
		return 1;
	id2 = msg->msg_id;
	check(id2 != id1, "a freed msg id is not reused at once (%u then %u)", id1, id2);
	check(dev_cmd(dev, "copen %u,-999999", id2) == -EINVAL, "copen <id>,-999999: EINVAL");
	close(load->fd);
	expect_mount_fails(m, EIO, "non-errno size");

	/* The bounds of "a negative errno": -4095 is one, -4096 is not. */
	m = mount_and_read_open(dev, "-4096");
	if (m < 0)
		return 1;
	check(dev_cmd(dev, "copen %u,-4096", msg->msg_id) == -EINVAL,
	      "copen <id>,-4096 (not an errno): EINVAL");
	close(load->fd);
	expect_mount_fails(m, EIO, "-4096");
	m = mount_and_read_open(dev, "-4095");
	if (m < 0)
		return 1;
	check(dev_cmd(dev, "copen %u,-4095", msg->msg_id) == 0,
	      "copen <id>,-4095 (the last errno) is accepted");
	close(load->fd);
	expect_mount_fails(m, EIO, "-4095");

	m = mount_and_read_open(dev, "daemon error");
	if (m < 0)
		return 1;
	check(dev_cmd(dev, "copen %u,-5", msg->msg_id) == 0, "copen <id>,-EIO is accepted");
	close(load->fd);
	expect_mount_fails(m, EIO, "daemon error");

	m = mount_and_read_open(dev, "early close");
	if (m < 0)
		return 1;
	close(load->fd);
	check(dev_cmd(dev, "copen %u,%lld", msg->msg_id, img_size) == 0,
	      "copen after the anonymous fd was closed is accepted");
	expect_mount_fails(m, EIO, "early close");
	last = msg->msg_id;

	/*
	 * An OPEN not read yet: no copen may take it. Its id is not known
	 * before it is read; every id it could have (after the last one, not
	 * assuming a step) is tried.
	 */
	m = start_mount("fsid=simple.img", MNT);
	check(dev_pollin(dev, 30000), "unread OPEN pending");
	tried_ok = 0;
	for (i = 1; i <= 64; i++)
		if (dev_cmd(dev, "copen %u,%lld", last + i, img_size) != -EINVAL)
			tried_ok++;
	check(tried_ok == 0, "copen of an OPEN not yet read: EINVAL for ids %u..%u (%d not)",
	      last + 1, last + 64, tried_ok);
	st = dev_read(dev, buf, sizeof(buf));
	check(st > 0 && msg->opcode == CACHEFILES_OP_OPEN && msg->msg_id > last &&
	      msg->msg_id <= last + 64,
	      "msg ids are allocated cyclically: %u follows %u", msg->msg_id, last);
	/* Group 7: a stale copen while a newer OPEN waits does not complete it. */
	check(dev_cmd(dev, "copen %u,-1", last) == -EINVAL && dev_cmd(dev, "copen %u,-1", id1) == -EINVAL,
	      "stale copens of freed ids %u and %u while OPEN %u waits: EINVAL", last, id1,
	      msg->msg_id);
	answer_open(s);
	st = od_serve_until(s, m, 60000);
	check(st == 0, "the newer OPEN was still pending: its copen mounts (status %d)", st);
	return 0;
}

/*
 * Groups 4 and 6, and the wake-up after copen: a READ meets its object
 * closed (the anonymous fd released), which sends a new OPEN first. That
 * OPEN's fd is closed before copen: the OPEN fails, the object is closed
 * again, and the READ brings yet another OPEN instead of being skipped (or
 * handed out for an fd that is gone). The copen of that one wakes a daemon
 * asleep in poll() for the READ, which is then served.
 */
static int reopen(int dev, struct od_server *s)
{
	unsigned int obj, open_id;
	struct pollwait w;
	int st, fd, op;
	long woke, t0;
	pid_t r;

	obj = s->objs[0].id;
	od_close_all(s);
	r = start_sh("cmp " MNT "/big/one.bin " TREE "/big/one.bin");
	op = next_msg(dev);
	check(op == CACHEFILES_OP_OPEN,
	      "a READ on a closed object sends a new OPEN first (opcode %d)", op);
	if (op != CACHEFILES_OP_OPEN)
		goto out;
	open_id = msg->msg_id;
	fd = load->fd;
	diag("object %u reopened as %u, OPEN msg %u", obj, msg->object_id, open_id);
	st = ioctl(fd, CACHEFILES_IOC_READ_COMPLETE, open_id) < 0 ? errno : 0;
	check(st == EINVAL, "READ_COMPLETE with the OPEN's id: EINVAL (%d)", st);
	close(fd);
	check(dev_cmd(dev, "copen %u,%lld", open_id, img_size) == 0,
	      "the OPEN was still pending: copen after its fd was closed is accepted");
	op = next_msg(dev);
	check(op == CACHEFILES_OP_OPEN && msg->msg_id != open_id,
	      "the failed reopen leaves the object closed: the READ brings another OPEN (opcode %d, msg %u)",
	      op, op >= 0 ? msg->msg_id : 0);
	if (op != CACHEFILES_OP_OPEN)
		goto out;
	check(pollwait_start(&w, dev, POLL_LONG_MS),
	      "poll() sleeps while the only request is a READ held back for the reopen");
	t0 = now_ms();
	answer_open(s);
	woke = pollwait_end(&w, t0);
	check(woken(woke),
	      "the copen wakes the daemon asleep in poll() for the READ (%ld ms)", woke);
	op = next_msg(dev);
	check(op == CACHEFILES_OP_READ, "the READ is handed out after the copen (opcode %d)", op);
	if (op >= 0)
		od_answer(s, msg);
out:
	st = od_serve_until(s, r, 120000);
	check(st == 0, "the reader gets identical data (status %d)", st);
	return 0;
}

/*
 * restore: wakes a daemon asleep in poll() and hands out the same READs
 * again; selection is fair: it resumes after the last request read,
 * cyclically, not from the lowest id.
 */
static int restore_and_fairness(int dev, struct od_server *s)
{
	unsigned int a, b, got;
	struct pollwait w;
	pid_t r1, r2;
	int st, op;
	long woke, t0;

	/* The directories first, so that each reader needs one data READ. */
	st = od_serve_until(s, start_sh("ls -lR " MNT "/mid " MNT "/a >/dev/null"), 60000);
	check(st == 0, "directories listed (status %d)", st);
	r1 = start_read(MNT "/mid/m4.bin", 0, 4096);
	r2 = start_read(MNT "/a/b/c/d/deep.bin", 0, 4096);
	op = next_msg(dev);
	a = msg->msg_id;
	st = next_msg(dev);
	b = msg->msg_id;
	if (!check(op == CACHEFILES_OP_READ && st == CACHEFILES_OP_READ && a < b,
		   "two readers, two READs read and held (msgs %u, %u)", a, b))
		goto out;
	check(pollwait_start(&w, dev, POLL_LONG_MS), "poll() sleeps: nothing unread");
	t0 = now_ms();
	check(dev_cmd(dev, "restore") == 0, "restore");
	woke = pollwait_end(&w, t0);
	check(woken(woke), "restore wakes the daemon asleep in poll() (%ld ms)",
	      woke);
	op = next_msg(dev);
	got = msg->msg_id;
	check(op == CACHEFILES_OP_READ && got == a,
	      "after restore the same READ again: msg %u (wrapped round after %u), got %u", a, b,
	      got);
	check(dev_cmd(dev, "restore") == 0, "restore again");
	op = next_msg(dev);
	got = msg->msg_id;
	check(op == CACHEFILES_OP_READ && got == b,
	      "the next read resumes after the last one read: msg %u, not from the lowest (got %u)",
	      b, got);
	if (op >= 0)
		od_answer(s, msg);
out:
	st = od_serve_until(s, r1, 60000);
	st = st ? st : od_serve_until(s, r2, 60000);
	check(st == 0, "both readers get their data (status %d)", st);
	return 0;
}

int main(void)
{
	struct od_server s = { 0 };
	struct stat st_blob;
	int dev, st;
	pid_t r, u;

	msg = (void *)buf;
	load = (void *)msg->data;
	if (stat(BLOBS "/simple.img", &st_blob))
		return 1;
	img_size = st_blob.st_size;
	ktap_plan(58);
	dev = dev_open();
	if (dev < 0 || dev_bind(dev, "copen")) {
		diag("cannot bind: %d", dev);
		return 1;
	}
	s.dev = dev;
	basics(dev, &s);

	r = start_sh("cat " MNT "/big/two.bin >/dev/null");
	do {
		if (dev_wait_msg(dev, buf, sizeof(buf), 30000) <= 0)
			break;
		if (msg->opcode != CACHEFILES_OP_READ)
			od_answer(&s, msg);
	} while (msg->opcode != CACHEFILES_OP_READ);
	check(msg->opcode == CACHEFILES_OP_READ, "a read brings a READ");
	check(dev_cmd(dev, "copen %u,0", msg->msg_id) == -EINVAL, "copen of a READ id: EINVAL");
	od_answer(&s, msg);
	st = od_serve_until(&s, r, 120000);
	check(st == 0, "the reader finishes (status %d)", st);

	reopen(dev, &s);
	restore_and_fairness(dev, &s);

	u = start_sh("umount " MNT);
	st = od_serve_until(&s, u, 60000);
	check(st == 0, "unmount (status %d)", st);
	diag("served %lu OPEN, %lu READ, %lu CLOSE", s.opens, s.reads, s.closes);
	od_close_all(&s);
	close(dev);
	st = od_d_state_scan();
	check(st == 0, "nothing left in D state (%d)", st);
	return ktap_finish();
}
