// SPDX-License-Identifier: GPL-2.0
/*
 * The anonymous fd handed to the daemon with each OPEN: READ_COMPLETE and
 * its checks (unknown ioctl, unknown id, another object's fd, twice; an
 * OPEN's id is in copen.c, which holds an OPEN and its fd), unaligned and
 * partial writes, write() advancing the fd's position, a reader killed while
 * it waits (its late READ_COMPLETE is refused), pwrite/llseek after the
 * object was withdrawn by unmount (ENOBUFS, in a loop), and the release of
 * an fd completing the unread CLOSE an unmount waits for.
 */
#include "odtest.h"

#define MNT "/mnt/anonfd"

static char buf[CACHEFILES_MSG_MAX_SIZE];
static struct cachefiles_msg *msg = (void *)buf;

/* Next READ, answering anything else on the way; NULL on timeout. */
static struct cachefiles_msg *next_read(struct od_server *s)
{
	for (;;) {
		if (dev_wait_msg(s->dev, buf, sizeof(buf), 30000) <= 0)
			return NULL;
		if (msg->opcode == CACHEFILES_OP_READ)
			return msg;
		od_answer(s, msg);
	}
}

/* The file position of one of our fds, from /proc/self/fdinfo; -1 if unknown. */
static long long fd_pos(int fd)
{
	char path[64];
	long long pos = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "pos: %lld", &pos) != 1)
			pos = -1;
		fclose(f);
	}
	return pos;
}

static int complete(int fd, unsigned long id)
{
	return ioctl(fd, CACHEFILES_IOC_READ_COMPLETE, id) < 0 ? -errno : 0;
}

int main(void)
{
	static char page[8192] __attribute__((aligned(4096)));
	struct od_server s = { 0 };
	struct od_obj *o, *other = NULL;
	int dev, st, ret, fd, i;
	unsigned int read_id;
	pid_t m, r, u;

	ktap_plan(21);
	dev = dev_open();
	if (dev < 0 || dev_bind(dev, "anonfd")) {
		diag("cannot bind");
		return 1;
	}
	s.dev = dev;
	/* Two objects: the metadata blob and the data blob. */
	m = start_mount("fsid=meta.img,device=blob.img", MNT);
	st = od_serve_until(&s, m, 60000);
	/* blob.img's OPEN may come after the mount returned. */
	od_serve_opens(&s, 2, 60000);
	if (!check(st == 0 && s.opens == 2, "multi-device mount: two objects (%lu OPENs)", s.opens))
		return 1;

	r = start_sh("cat " MNT "/big/two.bin >/dev/null");
	if (!check(next_read(&s) != NULL, "a read brings a READ"))
		return 1;
	read_id = msg->msg_id;
	o = od_find(&s, msg->object_id);
	for (i = 0; i < OD_MAX_OBJS; i++)
		if (s.objs[i].anon_fd > 0 && &s.objs[i] != o)
			other = &s.objs[i];
	if (!o || !other)
		return 1;
	check(ioctl(o->anon_fd, _IOW(0x98, 2, int), read_id) < 0 && errno == EINVAL,
	      "unknown ioctl: EINVAL");
	check(complete(o->anon_fd, read_id + 1000) == -EINVAL, "READ_COMPLETE of an unknown id: EINVAL");
	check(complete(other->anon_fd, read_id) == -EINVAL,
	      "READ_COMPLETE through another object's fd: EINVAL");
	ret = pwrite(o->anon_fd, page, 4096, 100);
	check(ret < 0 && errno == ENOBUFS, "pwrite at an unaligned offset: ENOBUFS");
	{
		struct cachefiles_read *rd = (void *)msg->data;

		/* The blob's own first 100 bytes there: the full answer follows. */
		pread(o->blob_fd, page, 100, rd->off);
		ret = pwrite(o->anon_fd, page, 100, rd->off);
		/* Direct I/O underneath: a length that is not a multiple of
		 * the block size is refused, as upstream does.
		 */
		check(ret == -1 && errno == EINVAL,
		      "a partial page at an aligned offset: EINVAL (got %d, errno %d)",
		      ret, ret < 0 ? errno : 0);
	}
	{
		/* write(), not pwrite(): the blob's first two pages where
		 * they belong, if the fd's position follows the writes.
		 */
		struct od_obj *w = o->size >= 8192 ? o : other;
		long long p0 = fd_pos(w->anon_fd), p1, p2;

		pread(w->blob_fd, page, 8192, 0);
		ret = write(w->anon_fd, page, 4096);
		p1 = fd_pos(w->anon_fd);
		ret += write(w->anon_fd, page + 4096, 4096);
		p2 = fd_pos(w->anon_fd);
		check(ret == 8192 && p0 == 0 && p1 == 4096 && p2 == 8192,
		      "write() advances the anonymous fd's position (%lld, %lld, %lld; %d bytes)",
		      p0, p1, p2, ret);
	}
	od_answer(&s, msg);
	check(complete(o->anon_fd, read_id) == -EINVAL, "READ_COMPLETE twice: EINVAL");
	st = od_serve_until(&s, r, 600000);
	check(st == 0, "the reader gets its data (status %d)", st);

	/* A reader killed while it waits; the late completion is refused. */
	r = start_sh("cat " MNT "/mid/m4.bin >/dev/null");
	if (!check(next_read(&s) != NULL, "a second read brings a READ"))
		return 1;
	read_id = msg->msg_id;
	o = od_find(&s, msg->object_id);
	kill(r, SIGKILL);
	st = wait_child(r, 10000);
	check(st == 128 + SIGKILL, "the waiting reader dies of SIGKILL (status %d)", st);
	check(o && complete(o->anon_fd, read_id) == -EINVAL,
	      "late READ_COMPLETE for the killed reader: EINVAL");

	/* Keep an fd, withdraw its object by unmounting. */
	fd = dup(o->anon_fd);
	u = start_sh("umount " MNT);
	st = od_serve_until(&s, u, 60000);
	check(st == 0, "unmount (status %d)", st);
	ret = 0;
	for (i = 0; i < 200; i++) {
		if (pwrite(fd, page, 4096, 0) != -1 || errno != ENOBUFS)
			ret++;
		if (lseek(fd, 0, SEEK_SET) != -1 || errno != ENOBUFS)
			ret++;
	}
	check(ret == 0, "pwrite and llseek after unmount: ENOBUFS 200 times each");
	close(fd);
	od_close_all(&s);

	/*
	 * An unmount waits for its CLOSE, which nobody reads: releasing the
	 * object's anonymous fd completes it.
	 */
	st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
	check(st == 0 && s.opens == 3, "simple.img mounted (status %d)", st);
	u = start_sh("umount " MNT);
	check(dev_pollin(dev, 30000) && wait_child(u, 0) == -1,
	      "the unmount waits for its CLOSE, unread");
	od_close_all(&s);
	st = wait_child(u, 10000);
	check(st == 0, "releasing the anonymous fd completes the unread CLOSE: unmount done (status %d)",
	      st);
	if (st < 0)
		od_serve_until(&s, u, 30000);
	ret = dev_read(dev, msg, sizeof(buf));
	if (!strcmp(backend(), "c"))
		/* A known divergence (Documentation/rust-backend.md): C matches
		 * the CLOSE on an object id set only once it is read, so the
		 * release leaves the unread CLOSE queued.
		 */
		check(ret == (ssize_t)sizeof(struct cachefiles_msg) &&
		      msg->opcode == CACHEFILES_OP_CLOSE,
		      "C: the unread CLOSE stays queued after the release (%d)", ret);
	else
		check(ret == 0, "the CLOSE is gone from the queue: read gets 0 (%d)", ret);
	close(dev);
	for (i = 0; i < 50 && (dev = dev_open()) == -EBUSY; i++)
		usleep(100000);
	check(dev >= 0, "the cache is freed once the devnode and the fds are closed");
	if (dev >= 0)
		close(dev);
	st = od_d_state_scan();
	check(st == 0, "nothing left in D state (%d)", st);
	return ktap_finish();
}
