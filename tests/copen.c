// SPDX-License-Identifier: GPL-2.0
/*
 * OPEN requests and copen, with the test acting as the daemon: the message
 * contents, a short and an unmapped read buffer, every malformed or misplaced
 * copen, stale and cyclic message ids, an anonymous fd closed before copen,
 * and that a good mount still works after all of that.
 */
#include "odtest.h"

#define MNT "/mnt/copen"

static struct cachefiles_msg *msg;
static char buf[CACHEFILES_MSG_MAX_SIZE];

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

static void expect_mount_fails(pid_t m, const char *what)
{
	int st = wait_child(m, 30000);

	check(st > 0, "%s: the mount fails (status %d)", what, st);
	if (st < 0)
		kill(m, SIGKILL);
}

int main(void)
{
	struct cachefiles_open *load;
	struct od_server s = { 0 };
	unsigned int id1, id2, guess;
	struct stat st_blob;
	void *noaccess;
	int dev, fds, st;
	pid_t m, r, u;
	char name[64];

	msg = (void *)buf;
	load = (void *)msg->data;
	stat(BLOBS "/simple.img", &st_blob);
	ktap_plan(31);
	dev = dev_open();
	if (dev < 0 || dev_bind(dev, "copen")) {
		diag("cannot bind: %d", dev);
		return 1;
	}
	s.dev = dev;

	m = start_mount("fsid=simple.img", MNT);
	check(dev_pollin(dev, 30000), "an OPEN makes the devnode readable");
	check(dev_read(dev, buf, 8) == -EMSGSIZE, "8-byte buffer: EMSGSIZE");
	check(dev_pollin(dev, 0), "the request is still pending after EMSGSIZE");
	fds = count_fds();
	noaccess = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(dev_read(dev, noaccess, 4096) == -EFAULT, "OPEN into an unmapped buffer: EFAULT");
	check(count_fds() == fds, "no anonymous fd was installed");
	expect_mount_fails(m, "after EFAULT");

	m = mount_and_read_open(dev, "contents");
	if (m < 0)
		return 1;
	check(load->volume_key_size == sizeof("erofs,simple.img") &&
	      !memcmp(load->data, "erofs,simple.img", sizeof("erofs,simple.img")),
	      "volume key is 'erofs,simple.img' with its NUL");
	check(!strcmp(open_cookie(msg, name, sizeof(name)), "simple.img") &&
	      load->cookie_key_size == strlen("simple.img"), "cookie key is the blob name");
	check(msg->object_id > 0 && fcntl(load->fd, F_GETFD) >= 0,
	      "object id %u and a valid anonymous fd %u", msg->object_id, load->fd);
	id1 = msg->msg_id;
	check(dev_cmd(dev, "copen %u,abc", id1) == -EINVAL, "copen <id>,abc: EINVAL");
	close(load->fd);
	expect_mount_fails(m, "bad size");
	check(dev_cmd(dev, "copen %u,-1", id1) == -EINVAL, "stale copen of a finished id: EINVAL");

	m = mount_and_read_open(dev, "non-errno size");
	if (m < 0)
		return 1;
	id2 = msg->msg_id;
	check(id2 != id1, "a freed msg id is not reused at once (%u then %u)", id1, id2);
	check(dev_cmd(dev, "copen %u,-999999", id2) == -EINVAL, "copen <id>,-999999: EINVAL");
	close(load->fd);
	expect_mount_fails(m, "non-errno size");

	m = mount_and_read_open(dev, "daemon error");
	if (m < 0)
		return 1;
	check(dev_cmd(dev, "copen %u,-5", msg->msg_id) == 0, "copen <id>,-EIO is accepted");
	close(load->fd);
	expect_mount_fails(m, "daemon error");

	m = mount_and_read_open(dev, "early close");
	if (m < 0)
		return 1;
	close(load->fd);
	check(dev_cmd(dev, "copen %u,%lld", msg->msg_id, (long long)st_blob.st_size) == 0,
	      "copen after the anonymous fd was closed is accepted");
	expect_mount_fails(m, "early close (EBADFD)");

	guess = msg->msg_id + 1;
	m = start_mount("fsid=simple.img", MNT);
	check(dev_pollin(dev, 30000), "unread OPEN pending");
	check(dev_cmd(dev, "copen %u,%lld", guess, (long long)st_blob.st_size) == -EINVAL,
	      "copen of an OPEN not yet read: EINVAL");
	st = dev_read(dev, buf, sizeof(buf));
	check(st > 0 && msg->msg_id == guess,
	      "msg ids are allocated cyclically (expected %u, got %u)", guess, msg->msg_id);
	od_answer(&s, msg);
	st = od_serve_until(&s, m, 60000);
	check(st == 0, "after all that, a mount succeeds (status %d)", st);

	r = start_sh("cat " MNT "/big/one.bin >/dev/null");
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
	u = start_sh("umount " MNT);
	st = od_serve_until(&s, u, 60000);
	check(st == 0, "unmount (CLOSE served)");
	diag("served %lu OPEN, %lu READ, %lu CLOSE", s.opens, s.reads, s.closes);
	od_close_all(&s);
	close(dev);
	return ktap_finish();
}
