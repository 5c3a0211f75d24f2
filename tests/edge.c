// SPDX-License-Identifier: GPL-2.0
/*
 * edge: scratch edge-case test of the on-demand backend (any backend).
 *   edge CACHEDIR BLOBDIR TREEDIR
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/cachefiles.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int n, failed;
static const char *blobdir, *treedir;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d ", ok ? "" : "not ", ++n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		failed++;
}

/* write a command; returns 0 or -errno */
static int cmd(int dev, const char *s, size_t len)
{
	ssize_t r = write(dev, s, len);

	if (r < 0)
		return -errno;
	return r == (ssize_t)len ? 0 : -1000;
}

static int cmds(int dev, const char *s)
{
	return cmd(dev, s, strlen(s));
}

static int wait_req(int dev, int ms)
{
	struct pollfd p = { .fd = dev, .events = POLLIN };

	return poll(&p, 1, ms) > 0 && (p.revents & POLLIN);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int c = 0;

	while ((e = readdir(d)))
		c++;
	closedir(d);
	return c;
}

static pid_t spawn(const char *sh)
{
	pid_t p = fork();

	if (!p) {
		execl("/bin/sh", "sh", "-c", sh, NULL);
		_exit(127);
	}
	return p;
}

/* wait up to ms for a child; returns status or -1 on timeout */
static int reap(pid_t p, int ms)
{
	int st;

	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(p, &st, WNOHANG) == p)
			return st;
		usleep(10000);
	}
	return -1;
}

static int anon_of[1024];
static int blob_of[1024];

static off_t open_blob(struct cachefiles_msg *m, int *bfd)
{
	struct cachefiles_open *o = (void *)m->data;
	char name[300], path[600];
	struct stat st;

	memcpy(name, o->data + o->volume_key_size, o->cookie_key_size);
	name[o->cookie_key_size] = 0;
	snprintf(path, sizeof(path), "%s/%s", blobdir, name);
	*bfd = open(path, O_RDONLY);
	if (*bfd < 0 || fstat(*bfd, &st) < 0)
		return -1;
	return st.st_size;
}

static char buf[1 << 20] __attribute__((aligned(4096)));

static void serve_read(struct cachefiles_msg *m)
{
	struct cachefiles_read *r = (void *)m->data;
	int a = anon_of[m->object_id], b = blob_of[m->object_id];
	size_t len = r->len;

	if (len > sizeof(buf))
		len = sizeof(buf);
	ssize_t got = pread(b, buf, len, r->off);

	if (got > 0 && pwrite(a, buf, got, r->off) != got)
		printf("# pwrite %llu: %s\n", (unsigned long long)r->off, strerror(errno));
	if (ioctl(a, CACHEFILES_IOC_READ_COMPLETE, m->msg_id) < 0)
		printf("# READ_COMPLETE: %s\n", strerror(errno));
}

/* serve until child p exits; returns its status */
static int serve_until(int dev, pid_t p, int first_read_checks)
{
	char mb[1024];
	int st;

	for (;;) {
		if (waitpid(p, &st, WNOHANG) == p)
			return st;
		if (!wait_req(dev, 50))
			continue;
		ssize_t len = read(dev, mb, sizeof(mb));

		if (len <= 0)
			continue;
		struct cachefiles_msg *m = (void *)mb;

		if (m->object_id >= 1024)
			continue;
		switch (m->opcode) {
		case CACHEFILES_OP_OPEN: {
			struct cachefiles_open *o = (void *)m->data;
			char c[64];
			off_t size = open_blob(m, &blob_of[m->object_id]);

			anon_of[m->object_id] = o->fd;
			fcntl(o->fd, F_SETFD, FD_CLOEXEC);
			snprintf(c, sizeof(c), "copen %u,%lld", m->msg_id, (long long)size);
			cmds(dev, c);
			/* a stale copen of the same id now fails */
			if (first_read_checks)
				check(cmds(dev, c) == -EINVAL, "second copen of msg %u: EINVAL", m->msg_id);
			break;
		}
		case CACHEFILES_OP_READ: {
			int a = anon_of[m->object_id];

			if (first_read_checks) {
				first_read_checks = 0;
				errno = 0;
				check(ioctl(a, 0x1234, m->msg_id) < 0 && errno == EINVAL,
				      "unknown ioctl: EINVAL");
				check(lseek(a, 0, SEEK_END) >= 0, "llseek on anon fd");
				errno = 0;
				ssize_t w = pwrite(a, "x", 1, 1);
				printf("# unaligned pwrite: %zd %s\n", w, strerror(errno));
				serve_read(m);
				errno = 0;
				check(ioctl(a, CACHEFILES_IOC_READ_COMPLETE, m->msg_id) < 0 &&
				      errno == EINVAL, "READ_COMPLETE twice: EINVAL");
				break;
			}
			serve_read(m);
			break;
		}
		case CACHEFILES_OP_CLOSE:
			close(anon_of[m->object_id]);
			anon_of[m->object_id] = -1;
			break;
		}
	}
}

/* read one message, expecting opcode op; returns len */
static ssize_t read_msg(int dev, char *mb, unsigned int op)
{
	for (int i = 0; i < 100; i++) {
		if (!wait_req(dev, 100))
			continue;
		ssize_t len = read(dev, mb, 1024);
		struct cachefiles_msg *m = (void *)mb;

		if (len > 0 && m->opcode == op)
			return len;
		if (len > 0)
			printf("# skipping opcode %u\n", m->opcode);
	}
	return -1;
}

int main(int argc, char **argv)
{
	char mb[1024], c[256];
	int dev, st;
	pid_t p;

	if (argc < 4)
		return 2;
	blobdir = argv[2];
	treedir = argv[3];
	setvbuf(stdout, NULL, _IOLBF, 0);
	dev = open("/dev/cachefiles", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return 1;
	snprintf(c, sizeof(c), "dir %s", argv[1]);
	check(cmds(dev, c) == 0, "dir");
	check(cmds(dev, "tag edge") == 0, "tag");
	check(cmds(dev, "bind ondemand") == 0, "bind ondemand");
	check(open("/dev/cachefiles", O_RDWR) < 0 && errno == EBUSY, "second open: EBUSY");

	/* Phase A: malformed commands, EMSGSIZE, EFAULT */
	check(read(dev, mb, sizeof(mb)) == 0, "read with nothing pending: 0");
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	check(wait_req(dev, 20000), "OPEN makes the devnode readable");
	errno = 0;
	check(read(dev, mb, 8) < 0 && errno == EMSGSIZE, "short read: EMSGSIZE");
	check(wait_req(dev, 0), "still readable after EMSGSIZE");
	check(cmds(dev, "copen") == -EINVAL, "copen: EINVAL");
	check(cmds(dev, "copen 5") == -EINVAL, "copen 5: EINVAL");
	check(cmds(dev, "copen x,1") == -EINVAL, "copen x,1: EINVAL");
	check(cmds(dev, "copen 0,100") == -EINVAL, "copen of an unread OPEN: EINVAL");
	check(cmds(dev, "copen 77,-999999") == -EINVAL, "copen of an unknown id: EINVAL");
	check(cmds(dev, "copen 0x,1") == -EINVAL, "copen 0x,1: EINVAL");
	check(cmds(dev, "copen 99999999999999999999,1") == -ERANGE, "copen overflow: ERANGE");
	check(cmd(dev, "copen 0,1\0x", 11) == -EINVAL, "embedded NUL: EINVAL");
	check(cmds(dev, "\ncopen 0,1") == -EINVAL, "leading newline: EINVAL");
	check(cmds(dev, "bogus 1") == -EOPNOTSUPP, "unknown command: EOPNOTSUPP");
	{
		static char big[5000];

		memset(big, 'a', sizeof(big));
		check(cmd(dev, big, sizeof(big)) == -EOPNOTSUPP, "over PAGE_SIZE-1: EOPNOTSUPP");
	}
	{
		void *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		int before = count_fds();

		errno = 0;
		check(read(dev, bad, 1024) < 0 && errno == EFAULT, "OPEN into an unmapped buffer: EFAULT");
		usleep(100000);
		check(count_fds() == before, "no fd installed after EFAULT (%d -> %d)", before, count_fds());
	}
	st = reap(p, 30000);
	check(st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0), "mount fails after EFAULT (st %x)", st);

	/* Phase B: anon fd closed before copen */
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_OPEN);
		struct cachefiles_msg *m = (void *)mb;
		struct cachefiles_open *o = (void *)m->data;

		check(len > 0, "OPEN read (len %zd, msg %u, object %u)", len, m->msg_id, m->object_id);
		check(close(o->fd) == 0, "anon fd closed");
		snprintf(c, sizeof(c), "copen %u,5140480", m->msg_id);
		check(cmds(dev, c) == 0, "copen after close: write succeeds");
		st = reap(p, 30000);
		check(st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0),
		      "mount fails (EBADFD) (st %x)", st);
		snprintf(c, sizeof(c), "copen %u,-1", m->msg_id);
		check(cmds(dev, c) == -EINVAL, "stale copen -1 of freed id: EINVAL");
	}

	/* Phase B2: negative errno copen fails the OPEN, write succeeds */
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_OPEN);
		struct cachefiles_msg *m = (void *)mb;
		struct cachefiles_open *o = (void *)m->data;

		check(len > 0, "OPEN read");
		snprintf(c, sizeof(c), "copen %u,-1", m->msg_id);
		check(cmds(dev, c) == 0, "copen id,-1: write succeeds");
		close(o->fd);
		st = reap(p, 30000);
		check(st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0), "mount fails (EPERM)");
	}
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_OPEN);
		struct cachefiles_msg *m = (void *)mb;
		struct cachefiles_open *o = (void *)m->data;

		check(len > 0, "OPEN read");
		snprintf(c, sizeof(c), "copen %u,-999999", m->msg_id);
		check(cmds(dev, c) == -EINVAL, "copen id,-999999: EINVAL");
		close(o->fd);
		st = reap(p, 30000);
		check(st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0), "mount fails");
	}
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_OPEN);
		struct cachefiles_msg *m = (void *)mb;
		struct cachefiles_open *o = (void *)m->data;

		check(len > 0, "OPEN read");
		snprintf(c, sizeof(c), "copen %u,abc", m->msg_id);
		check(cmds(dev, c) == -EINVAL, "copen id,abc: EINVAL");
		close(o->fd);
		st = reap(p, 30000);
		check(st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0), "mount fails");
	}

	/* Phase C: serve a real mount, with checks on the first READ */
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	st = serve_until(dev, p, 1);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mount served");
	check(cmds(dev, "restore") == 0, "restore");
	p = spawn("cmp /mnt/edge/big/one.bin $TREE/big/one.bin");
	st = serve_until(dev, p, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "big/one.bin identical");
	{
		int s = open("/sys/kernel/debug/cachefiles_ondemand_rs/stats", O_RDONLY);

		if (s >= 0) {
			ssize_t l = read(s, buf, 4000);

			buf[l > 0 ? l : 0] = 0;
			for (char *q = strtok(buf, "\n"); q; q = strtok(NULL, "\n"))
				printf("# stats: %s\n", q);
			close(s);
		}
	}

	/* Phase D: a reader killed while waiting */
	p = spawn("cat /mnt/edge/big/two.bin > /dev/null");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_READ);
		struct cachefiles_msg *m = (void *)mb;

		check(len > 0, "READ read (msg %u)", m->msg_id);
		kill(p, SIGKILL);
		st = reap(p, 10000);
		check(st != -1, "killed reader exits");
		errno = 0;
		check(ioctl(anon_of[m->object_id], CACHEFILES_IOC_READ_COMPLETE, m->msg_id) < 0 &&
		      errno == EINVAL, "late READ_COMPLETE of a killed reader: EINVAL");
	}
	p = spawn("cmp /mnt/edge/big/two.bin $TREE/big/two.bin");
	st = serve_until(dev, p, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "big/two.bin identical after a killed reader");

	/* Phase F: failover: the daemon's fds go away, restore, reopen */
	p = spawn("cmp /mnt/edge/mid/m4.bin $TREE/mid/m4.bin");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_READ);
		struct cachefiles_msg *m = (void *)mb;

		check(len > 0, "READ read before the crash (msg %u)", m->msg_id);
		for (int i = 0; i < 1024; i++)
			if (anon_of[i] > 0) {
				close(anon_of[i]);
				anon_of[i] = -1;
			}
		usleep(100000);
		check(cmds(dev, "restore") == 0, "restore after the crash");
		st = serve_until(dev, p, 0);
		check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mid/m4.bin identical after failover");
	}

	/* Phase G: unmount while the reopen work's OPEN is pending */
	p = spawn("cat /mnt/edge/mid/m3.bin > /dev/null");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_READ);

		check(len > 0, "G: READ read");
		for (int i = 0; i < 1024; i++)
			if (anon_of[i] > 0) {
				close(anon_of[i]);
				anon_of[i] = -1;
			}
		usleep(100000);
		check(cmds(dev, "restore") == 0, "G: restore");
		len = read_msg(dev, mb, CACHEFILES_OP_OPEN);
		struct cachefiles_msg *m = (void *)mb;
		struct cachefiles_open *o = (void *)m->data;

		check(len > 0, "G: reopen work re-sent the OPEN (msg %u)", m->msg_id);
		kill(p, SIGKILL);
		check(reap(p, 10000) != -1, "G: killed reader exits");
		p = spawn("umount /mnt/edge");
		st = reap(p, 30000);
		check(st == 0, "G: umount with the reopen OPEN pending (st %x)", st);
		close(o->fd);
	}
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	st = serve_until(dev, p, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "remount served");

	/* Phase H: the anon fd outlives the object: ENOBUFS */
	p = spawn("umount /mnt/edge");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_CLOSE);
		struct cachefiles_msg *m = (void *)mb;
		int a = m->object_id < 1024 ? anon_of[m->object_id] : -1;

		check(len > 0, "H: CLOSE sent on umount (object %u)", m->object_id);
		st = reap(p, 30000);
		check(st == 0, "H: umount (st %x)", st);
		errno = 0;
		check(pwrite(a, buf, 4096, 0) < 0 && errno == ENOBUFS, "H: pwrite after withdrawal: ENOBUFS (%s)", strerror(errno));
		errno = 0;
		check(lseek(a, 0, SEEK_SET) < 0 && errno == ENOBUFS, "H: llseek after withdrawal: ENOBUFS (%s)", strerror(errno));
		close(a);
		if (m->object_id < 1024)
			anon_of[m->object_id] = -1;
	}
	p = spawn("mount -t erofs none -o fsid=simple.img /mnt/edge");
	st = serve_until(dev, p, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "remount served");

	/* Phase E: close the devnode with a reader waiting */
	p = spawn("find /mnt/edge -type f | xargs cat > /dev/null 2>&1");
	{
		ssize_t len = read_msg(dev, mb, CACHEFILES_OP_READ);

		printf("# phase E READ: %zd\n", len);
		for (int i = 0; i < 1024; i++)
			if (anon_of[i] > 0)
				close(anon_of[i]);
		close(dev);
		st = reap(p, 30000);
		check(st != -1, "reader does not hang after the devnode is closed (st %x)", st);
	}
	check(system("umount /mnt/edge") == 0, "umount");

	/* Phase I: the cache dies of an I/O error while an OPEN is pending */
	dev = open("/dev/cachefiles", O_RDWR | O_CLOEXEC);
	check(dev >= 0, "I: devnode reopened");
	snprintf(c, sizeof(c), "dir %s2", argv[1]);
	mkdir(c + 4, 0700);
	check(cmds(dev, c) == 0, "I: dir");
	check(cmds(dev, "tag edge2") == 0, "I: tag");
	check(cmds(dev, "bind ondemand") == 0, "I: bind");
	memset(anon_of, 0, sizeof(anon_of));
	p = spawn("mount -t erofs none -o fsid=simple.img,domain_id=dd /mnt/edge");
	st = serve_until(dev, p, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "I: mount with domain_id served");
	p = spawn("cat /mnt/edge/big/one.bin > /dev/null");
	check(read_msg(dev, mb, CACHEFILES_OP_READ) > 0, "I: READ pending");
	check(system("echo 2 > /proc/sys/cachefiles/error_injection") == 0, "I: inject I/O errors");
	{
		pid_t p2 = spawn("mount -t erofs none -o fsid=meta.img,device=blob.img,domain_id=dd /mnt/edge2");

		st = reap(p2, 30000);
		check(st != -1 && st != 0, "I: second mount fails, no hang (st %x)", st);
		st = reap(p, 30000);
		check(st != -1 && st != 0, "I: pending reader fails, no hang (st %x)", st);
	}
	check(cmds(dev, "copen 0,1") == -EIO, "I: commands fail with EIO once dead");
	check(read(dev, mb, sizeof(mb)) == 0, "I: nothing left to read");
	system("echo 0 > /proc/sys/cachefiles/error_injection");
	for (int i = 0; i < 1024; i++)
		if (anon_of[i] > 0)
			close(anon_of[i]);
	check(system("umount /mnt/edge") == 0, "I: umount");
	close(dev);
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
