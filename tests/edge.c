// SPDX-License-Identifier: GPL-2.0
/*
 * edge: the on-demand protocol from more angles, with this program as the
 * daemon (through odtest.h, so the bind asserts the backend):
 *   A  malformed commands, EMSGSIZE, EFAULT (no fd installed), also when
 *      only the keys fault
 *   B  copen of an unread OPEN, an fd closed before copen (EBADFD), daemon
 *      errors and bad sizes, each with the errno the mount gets
 *   C  a served mount; checks on the anonymous fd at the first READ
 *   D  a reader killed while waiting; its late READ_COMPLETE is refused
 *   J  a READ whose copy to the daemon faults: EFAULT, and the READ fails
 *   K  an OPEN answered while the daemon's read() is still copying it out
 *      (its keys' page faults into a READ the test holds): the read()
 *      delivers it whole, the mount completes; on the Rust backend the
 *      OPEN's lent object is counted once, from the end of its wait
 *   F  failover: the daemon's fds go away, restore, reopen
 *   G  unmount with the reopen OPEN pending (group 10); a lazy unmount with
 *      a READ pending and the reopen work waiting for its copen
 *   H  the anonymous fd outlives its object: ENOBUFS
 *   E  the devnode closed with a READ pending: the reader gets EIO
 *   I  the cache killed by an injected I/O error while a READ it has read
 *      is pending (group 9): the reader gets EIO, nothing hangs
 * "core:" marks points that test code shared by both backends (the devnode
 * command parser in daemon.c, erofs): they cannot catch a backend bug.
 */
#include "odtest.h"

#define MNT "/mnt/edge"
#define MNT2 "/mnt/edge2"
/* What a reader with readahead off gets when its READ failed with EFAULT
 * (erofs fails the folio with EIO, whatever the error). */
#define EFAULT_READER EIO

static char buf[CACHEFILES_MSG_MAX_SIZE];
static struct cachefiles_msg *msg = (void *)buf;
static struct cachefiles_open *load = (void *)(buf + sizeof(struct cachefiles_msg));
static struct od_server s;
static long long img_size;

/* The next message of opcode op, answering any other on the way. */
static int next_of(int op)
{
	for (;;) {
		if (dev_wait_msg(s.dev, buf, sizeof(buf), 60000) <= 0)
			return 0;
		if ((int)msg->opcode == op)
			return 1;
		od_answer(&s, msg);
	}
}

static int served(pid_t p)
{
	return od_serve_until(&s, p, 120000);
}

/*
 * A failed OPEN fails the mount with EIO when the mount's first read was
 * already waiting on the lookup, or with ENOBUFS from fscache when the
 * cookie had failed before that read asked: the core's choice by timing
 * (copen.c, seen under load). Either is the failure; a hang or success is
 * not.
 */
static void expect_fails(pid_t m, int want, const char *what)
{
	int st = wait_child(m, 120000);

	if (want == EIO && st == ENOBUFS)
		diag("%s: ENOBUFS (the cookie had failed before the mount's read)", what);
	check(st == want || (want == EIO && st == ENOBUFS), "%s: the mount fails with %s (status %d)",
	      what, want == EIO ? "EIO or ENOBUFS" : strerrorname_np(want), st);
	if (st < 0) {
		kill(m, SIGKILL);
		wait_child(m, 5000);
	}
}

/*
 * Two pages, the second unmapped: a buffer ending on the first faults
 * there. NULL if they could not be made.
 */
static char *page_then_hole(void)
{
	char *pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (pages == MAP_FAILED)
		return NULL;
	if (mprotect(pages + 4096, 4096, PROT_NONE)) {
		munmap(pages, 8192);
		return NULL;
	}
	return pages;
}

static void close_fds_of_daemon(void)
{
	od_close_all(&s);
}

static void phase_a(int dev)
{
	static char big[5000];
	size_t head = sizeof(struct cachefiles_msg) + sizeof(struct cachefiles_open);
	struct cachefiles_msg *hdr;
	char *pages;
	void *bad;
	int before;
	ssize_t n;
	pid_t m;

	check(dev_read(dev, buf, sizeof(buf)) == 0, "read with nothing pending: 0");
	m = start_mount("fsid=simple.img", MNT);
	check(dev_pollin(dev, 120000), "OPEN makes the devnode readable");
	check(dev_read(dev, buf, 8) == -EMSGSIZE, "short read: EMSGSIZE");
	check(dev_pollin(dev, 0), "still readable after EMSGSIZE");
	check(dev_cmd(dev, "copen") == -EINVAL, "copen: EINVAL");
	check(dev_cmd(dev, "copen 5") == -EINVAL, "copen 5: EINVAL");
	check(dev_cmd(dev, "copen x,1") == -EINVAL, "copen x,1: EINVAL");
	check(dev_cmd(dev, "copen 4000000000,-999999") == -EINVAL, "copen of an unknown id: EINVAL");
	check(dev_cmd(dev, "copen 0x,1") == -EINVAL, "copen 0x,1: EINVAL");
	check(dev_cmd(dev, "copen 99999999999999999999,1") == -ERANGE, "copen overflow: ERANGE");
	check(dev_cmdn(dev, "copen 0,1\0x", 11) == -EINVAL, "core: embedded NUL: EINVAL");
	check(dev_cmd(dev, "\ncopen 0,1") == -EINVAL, "core: leading newline: EINVAL");
	check(dev_cmd(dev, "bogus 1") == -EOPNOTSUPP, "core: unknown command: EOPNOTSUPP");
	memset(big, 'a', sizeof(big));
	check(dev_cmdn(dev, big, sizeof(big)) == -EOPNOTSUPP, "core: over PAGE_SIZE-1: EOPNOTSUPP");
	bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	before = own_fds();
	check(dev_read(dev, bad, 1024) == -EFAULT, "OPEN into an unmapped buffer: EFAULT");
	check(own_fds() == before, "no fd installed after EFAULT (%d -> %d)", before, own_fds());
	expect_fails(m, EIO, "EFAULT");
	munmap(bad, 4096);

	/* The OPEN's header and body fit in the mapped page, its keys do not. */
	pages = page_then_hole();
	if (!check(pages != NULL, "a buffer whose second page is unmapped"))
		return;
	hdr = (void *)(pages + 4096 - head);
	memset(hdr, 0xff, head);
	m = start_mount("fsid=simple.img", MNT);
	check(dev_pollin(dev, 120000), "the second OPEN makes the devnode readable");
	before = own_fds();
	n = dev_read(dev, hdr, sizeof(buf));
	check(n == -EFAULT, "OPEN into a buffer that faults after its body: EFAULT (%zd)", n);
	check(hdr->opcode == CACHEFILES_OP_OPEN && hdr->len > head,
	      "the header copied is the OPEN's, keys after it (opcode %u, len %u)", hdr->opcode,
	      hdr->len);
	check(own_fds() == before, "no fd installed after the keys' EFAULT (%d -> %d)", before,
	      own_fds());
	expect_fails(m, EIO, "keys' EFAULT");
	munmap(pages, 8192);
}

static void phase_b(int dev)
{
	unsigned int first = ~0U;
	int tried_ok = 0, i, ok;
	pid_t m;

	/* Anonymous fd closed before copen. The OPEN is unread at first. */
	m = start_mount("fsid=simple.img", MNT);
	check(dev_pollin(dev, 120000), "B: unread OPEN pending");
	for (i = 0; i < 64; i++)
		if (dev_cmd(dev, "copen %d,%lld", i, img_size) != -EINVAL)
			tried_ok++;
	check(tried_ok == 0, "B: copen of the unread OPEN: EINVAL for ids 0..63 (%d not)", tried_ok);
	ok = next_of(CACHEFILES_OP_OPEN);
	check(ok, "B: OPEN read (msg %u, object %u)", msg->msg_id, msg->object_id);
	first = msg->msg_id;
	diag("B: its msg id is %u%s", first, first < 64 ? "" : " (the copens above missed it)");
	check(close(load->fd) == 0, "B: anon fd closed");
	check(dev_cmd(dev, "copen %u,%lld", first, img_size) == 0, "B: copen after close: write succeeds");
	expect_fails(m, EIO, "B: closed fd");
	check(dev_cmd(dev, "copen %u,-1", first) == -EINVAL, "B: stale copen -1 of a freed id: EINVAL");

	/* A negative errno fails the OPEN, the write succeeds. */
	m = start_mount("fsid=simple.img", MNT);
	check(next_of(CACHEFILES_OP_OPEN), "B2: OPEN read");
	check(dev_cmd(dev, "copen %u,-1", msg->msg_id) == 0, "B2: copen id,-1: write succeeds");
	close(load->fd);
	expect_fails(m, EIO, "B2: copen -EPERM");
	m = start_mount("fsid=simple.img", MNT);
	check(next_of(CACHEFILES_OP_OPEN), "B2: OPEN read");
	check(dev_cmd(dev, "copen %u,-999999", msg->msg_id) == -EINVAL, "B2: copen id,-999999: EINVAL");
	close(load->fd);
	expect_fails(m, EIO, "B2: -999999");
	m = start_mount("fsid=simple.img", MNT);
	check(next_of(CACHEFILES_OP_OPEN), "B2: OPEN read");
	check(dev_cmd(dev, "copen %u,abc", msg->msg_id) == -EINVAL, "B2: copen id,abc: EINVAL");
	close(load->fd);
	expect_fails(m, EIO, "B2: abc");
}

static void phase_c(int dev)
{
	struct od_obj *o;
	unsigned int id;
	long long end;
	ssize_t w;
	pid_t m, r;
	int st;

	m = start_mount("fsid=simple.img", MNT);
	check(next_of(CACHEFILES_OP_OPEN), "C: OPEN read");
	id = msg->msg_id;
	od_answer(&s, msg);
	check(dev_cmd(dev, "copen %u,%lld", id, img_size) == -EINVAL,
	      "C: second copen of msg %u: EINVAL", id);
	st = served(m);
	check(st == 0, "C: mount served (status %d)", st);
	r = start_cmd("cmp " MNT "/big/one.bin " TREE "/big/one.bin");
	check(next_of(CACHEFILES_OP_READ), "C: a read brings a READ");
	o = od_find(&s, msg->object_id);
	if (o) {
		errno = 0;
		check(ioctl(o->anon_fd, 0x1234, msg->msg_id) < 0 && errno == EINVAL,
		      "C: unknown ioctl: EINVAL");
		end = lseek(o->anon_fd, 0, SEEK_END);
		check(end == img_size, "C: llseek(SEEK_END) on the anon fd: the object size %lld (%lld)",
		      img_size, end);
		errno = 0;
		w = pwrite(o->anon_fd, "x", 1, 1);
		check(w < 0 && errno == ENOBUFS, "C: unaligned pwrite: ENOBUFS (%zd, %s)", w,
		      strerrorname_np(errno));
		id = msg->msg_id;
		od_answer(&s, msg);
		errno = 0;
		check(ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, id) < 0 && errno == EINVAL,
		      "C: READ_COMPLETE twice: EINVAL");
	}
	check(dev_cmd(dev, "restore") == 0, "C: restore with the READ answered");
	st = served(r);
	check(st == 0, "C: big/one.bin identical (status %d)", st);
}

static void phase_d(void)
{
	struct od_obj *o;
	unsigned int id;
	pid_t r;
	int st, ok;

	r = start_read(MNT "/big/two.bin", 0, 65536);
	ok = next_of(CACHEFILES_OP_READ);
	check(ok, "D: READ read (msg %u)", msg->msg_id);
	id = msg->msg_id;
	o = od_find(&s, msg->object_id);
	kill(r, SIGKILL);
	st = wait_child(r, 10000);
	check(st == 128 + SIGKILL, "D: the waiting reader dies of SIGKILL (status %d)", st);
	errno = 0;
	check(o && ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, id) < 0 && errno == EINVAL,
	      "D: late READ_COMPLETE of a killed reader: EINVAL");
	st = served(start_cmd("cmp " MNT "/big/two.bin " TREE "/big/two.bin"));
	check(st == 0, "D: big/two.bin identical after a killed reader (status %d)", st);
}

static void phase_f(int dev)
{
	unsigned long opens = s.opens;
	pid_t p;
	int st, ok;

	p = start_cmd("cmp " MNT "/mid/m4.bin " TREE "/mid/m4.bin");
	ok = next_of(CACHEFILES_OP_READ);
	check(ok, "F: READ read before the crash (msg %u)", msg->msg_id);
	close_fds_of_daemon();
	check(dev_cmd(dev, "restore") == 0, "F: restore after the crash");
	st = served(p);
	check(st == 0 && s.opens == opens + 1,
	      "F: mid/m4.bin identical after failover, one reopen OPEN (status %d, %lu OPENs)", st,
	      s.opens - opens);
}

static void phase_g(int dev)
{
	unsigned int open_id;
	int st, fd, ok;
	pid_t p;

	/* The reopen OPEN pending (its work waiting for copen) at unmount. */
	p = start_read(MNT "/mid/m3.bin", 0, 4096);
	check(next_of(CACHEFILES_OP_READ), "G: READ read");
	close_fds_of_daemon();
	check(dev_cmd(dev, "restore") == 0, "G: restore");
	ok = dev_wait_msg(dev, buf, sizeof(buf), 60000) > 0 && msg->opcode == CACHEFILES_OP_OPEN;
	check(ok, "G: the READ sends a reopen OPEN (msg %u)", msg->msg_id);
	open_id = msg->msg_id;
	fd = load->fd;
	kill(p, SIGKILL);
	st = wait_child(p, 10000);
	check(st == 128 + SIGKILL, "G: killed reader exits (status %d)", st);
	st = wait_child(start_cmd("umount " MNT), 60000);
	check(st == 0, "G: umount with the reopen OPEN pending (status %d)", st);
	check(dev_cmd(dev, "copen %u,%lld", open_id, img_size) == -EINVAL,
	      "G: the unmount failed the pending OPEN: its copen gets EINVAL");
	close(fd);

	/*
	 * A lazy unmount while a reader waits for a READ held back by a
	 * reopen whose OPEN is pending: the superblock goes when the reader
	 * is killed, with the work still waiting for its copen.
	 */
	st = served(start_mount("fsid=simple.img", MNT));
	check(st == 0, "G2: remount served (status %d)", st);
	close_fds_of_daemon();
	p = start_read(MNT "/mid/m2.bin", 0, 4096);
	ok = dev_wait_msg(dev, buf, sizeof(buf), 60000) > 0 && msg->opcode == CACHEFILES_OP_OPEN;
	check(ok, "G2: the READ on the closed object sends a reopen OPEN (msg %u)", msg->msg_id);
	open_id = msg->msg_id;
	fd = load->fd;
	st = wait_child(start_cmd("umount -l " MNT), 60000);
	check(st == 0 && wait_child(p, 0) == -1,
	      "G2: lazy unmount while the READ and the OPEN are pending (status %d)", st);
	kill(p, SIGKILL);
	st = wait_child(p, 10000);
	check(st == 128 + SIGKILL, "G2: the reader dies, the superblock goes (status %d)", st);
	check(dev_cmd(dev, "copen %u,%lld", open_id, img_size) == -EINVAL,
	      "G2: its OPEN was failed: copen gets EINVAL");
	check(dev_read(dev, buf, sizeof(buf)) == 0, "G2: nothing left to read");
	close(fd);
	st = served(start_mount("fsid=simple.img", MNT));
	check(st == 0, "G2: remount served (status %d)", st);
}

/*
 * J: a READ whose copy to the daemon faults after its header: read() fails
 * with EFAULT, and the READ is completed with that error, never handed out
 * again; the reader is not left waiting.
 */
static unsigned int j_id;
static int j_again;

static void j_seen(struct cachefiles_msg *m)
{
	if (m->opcode == CACHEFILES_OP_READ && m->msg_id == j_id)
		j_again++;
}

static void phase_j(int dev)
{
	size_t len = sizeof(struct cachefiles_msg) + sizeof(struct cachefiles_read);
	char *pages = page_then_hole();
	struct cachefiles_msg *hdr;
	struct od_obj *o;
	ssize_t n;
	pid_t r;
	int st;

	if (!check(pages != NULL, "J: a buffer whose second page is unmapped"))
		return;
	/* The header fits in the mapped page, the READ's body does not. */
	hdr = (void *)(pages + 4096 - sizeof(*hdr));
	memset(hdr, 0xff, sizeof(*hdr));
	r = start_read_random(MNT "/mid/m4.bin", 65536, 4096);
	check(dev_pollin(dev, 60000), "J: a cold read makes the devnode readable");
	n = dev_read(dev, hdr, len);
	check(n == -EFAULT, "J: READ into a buffer that faults after its header: EFAULT (%zd)", n);
	j_id = hdr->msg_id;
	check(hdr->opcode == CACHEFILES_OP_READ && hdr->len == len,
	      "J: the header copied is the READ's (opcode %u, len %u, msg %u)", hdr->opcode,
	      hdr->len, j_id);
	o = od_find(&s, hdr->object_id);
	errno = 0;
	check(o && ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, j_id) < 0 && errno == EINVAL,
	      "J: the faulted READ is complete: its READ_COMPLETE: EINVAL");
	s.seen = j_seen;
	st = od_serve_until(&s, r, 60000);
	s.seen = NULL;
	check(st == EFAULT_READER, "J: the reader's read fails with EIO (status %d)", st);
	check(j_again == 0, "J: msg %u not handed out again (%d times)", j_id, j_again);
	munmap(pages, 8192);
}

/*
 * K: an OPEN answered while the daemon's read() is still copying it out.
 * The read()'s buffer ends a page of anonymous memory with the OPEN's header
 * and body; its keys go to the next page, a private mapping of a file of the
 * served mount that nobody read yet, so their copy faults into a READ,
 * which the test holds. With the header in hand (its msg_id and fd), the
 * test copens the OPEN: its waiter (fscache's lookup) returns, and the mount
 * goes on to READ its blob, while the read() still holds the request. Then
 * the held READ is answered and the read() delivers the OPEN whole, with its
 * fd, which serves the mount.
 *
 * On the Rust backend a request does not count a reference on its object:
 * its sender lends it the one it holds. Here the sender's wait ends while
 * the read() still holds the request, so ending the loan takes a reference
 * (a "GET backend" in cachefiles_ref), which the read() puts when it drops
 * the request; no other request of the phase takes one.
 */
#define MNTK "/mnt/edgek"
#define TRACING "/sys/kernel/tracing"

struct k_reader {
	int dev;
	void *dst;
	ssize_t n;
	pid_t tid;
	int done;
};

static void *k_read(void *arg)
{
	struct k_reader *k = arg;

	__atomic_store_n(&k->tid, gettid(), __ATOMIC_SEQ_CST);
	k->n = dev_read(k->dev, k->dst, 4096);
	__atomic_store_n(&k->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* The cachefiles_ref lines of the trace that contain what. */
static int k_refs(const char *what)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "grep -c '%s' " TRACING "/trace", what);
	return sh_int(cmd);
}

static void phase_k(int dev)
{
	static char held_buf[CACHEFILES_MSG_MAX_SIZE], next_buf[CACHEFILES_MSG_MAX_SIZE];
	size_t head = sizeof(struct cachefiles_msg) + sizeof(struct cachefiles_open);
	struct cachefiles_msg *held = (void *)held_buf, *next = (void *)next_buf;
	struct k_reader k = { .dev = dev };
	int rust = !strcmp(backend(), "rust");
	struct cachefiles_open *body;
	struct cachefiles_msg *hdr;
	int fd, bfd, i, st, ok;
	struct stat bst;
	pthread_t t;
	char *pages;
	pid_t m;

	pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fd = open(MNT "/a/b/c/d/deep.bin", O_RDONLY | O_CLOEXEC);
	bfd = open(BLOBS "/anchor.img", O_RDONLY | O_CLOEXEC);
	ok = pages != MAP_FAILED && fd >= 0 && bfd >= 0 && fstat(bfd, &bst) == 0;
	if (ok) {
		memset(pages, 0, 4096);
		/*
		 * Readahead stays on: a fault that reads ahead drops the mmap
		 * lock first, where one without readahead (MADV_RANDOM) takes
		 * the file's invalidate_lock under it, which lockdep reports
		 * (tests/lockdep-known.txt) and then checks nothing more.
		 */
		ok = mmap(pages + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
			  0) != MAP_FAILED;
	}
	if (!check(ok, "K: a buffer whose second page maps a file not read yet"))
		return;
	hdr = (void *)(pages + 4096 - head);
	body = (void *)hdr->data;
	memset(hdr, 0xff, head);
	/* Mounted already, or now. */
	mount("nodev", TRACING, "tracefs", 0, NULL);
	system("echo 0 > " TRACING "/tracing_on; echo > " TRACING "/trace;"
	       " echo cachefiles:cachefiles_ref > " TRACING "/set_event;"
	       " echo 1 > " TRACING "/tracing_on");
	m = start_mount("fsid=anchor.img", MNTK);
	check(dev_pollin(dev, 60000), "K: the mount's OPEN makes the devnode readable");
	k.dst = hdr;
	ok = pthread_create(&t, NULL, k_read, &k) == 0;
	while (ok && !__atomic_load_n(&k.tid, __ATOMIC_SEQ_CST))
		usleep(1000);
	/* Asleep in the fault's READ, killable: D. */
	ok = ok && od_wait_task_state(k.tid, "D", 60000);
	check(ok, "K: the read() of the OPEN sleeps in its copy");
	ok = ok && next_of(CACHEFILES_OP_READ);
	memcpy(held_buf, buf, sizeof(held_buf));
	check(ok && !__atomic_load_n(&k.done, __ATOMIC_SEQ_CST),
	      "K: the fault's READ is read and held, the read() still copying");
	check(hdr->opcode == CACHEFILES_OP_OPEN && hdr->len > head,
	      "K: the OPEN's header and body were copied before its keys (opcode %u, len %u)",
	      hdr->opcode, hdr->len);
	st = dev_cmd(dev, "copen %u,%lld", hdr->msg_id, (long long)bst.st_size);
	check(st == 0, "K: copen of the OPEN being copied (msg %u): 0 (%d)", hdr->msg_id, st);
	/* The lookup returned: the mount READs its blob, from the new object. */
	ok = dev_wait_msg(dev, next_buf, sizeof(next_buf), 60000) > 0;
	check(ok && next->opcode == CACHEFILES_OP_READ && next->object_id == hdr->object_id,
	      "K: the mount READs its blob (opcode %u, object %u of %u), the read() still copying (%d)",
	      next->opcode, next->object_id, hdr->object_id,
	      !__atomic_load_n(&k.done, __ATOMIC_SEQ_CST));
	st = od_answer_read(&s, held);
	check(st == 0, "K: the held READ answered (%d)", st);
	ok = ok && od_join_within(t, 60000);
	check(ok && k.n == hdr->len, "K: the read() then delivers the OPEN whole (%zd of %u bytes)",
	      k.n, hdr->len);
	for (i = 0; i < OD_MAX_OBJS && s.objs[i].anon_fd > 0; i++)
		;
	if (ok && i < OD_MAX_OBJS) {
		s.objs[i] = (struct od_obj){ hdr->object_id, body->fd, bfd, bst.st_size };
		bfd = -1;
		od_answer(&s, next);
	}
	st = served(m);
	check(st == 0, "K: the mount completes, served through the fd delivered (status %d)", st);
	if (rust) {
		int gets = k_refs("GET backend"), puts = k_refs("PUT backend");

		check(gets == 1 && puts == 1,
		      "K: the OPEN's object, lent, was counted once, when its wait ended before the read() let go (backend refs: %d GET, %d PUT)",
		      gets, puts);
	}
	system("echo 0 > " TRACING "/tracing_on; echo > " TRACING "/set_event");
	st = served(start_cmd("umount " MNTK));
	check(st == 0, "K: umount (status %d)", st);
	if (bfd >= 0)
		close(bfd);
	munmap(pages, 8192);
	close(fd);
}

static void phase_h(void)
{
	static char page[4096] __attribute__((aligned(4096)));
	int a, st, ok;
	off_t ret;
	long end;
	pid_t p;

	p = start_cmd("umount " MNT);
	ok = next_of(CACHEFILES_OP_CLOSE);
	check(ok, "H: CLOSE sent on umount (object %u)", msg->object_id);
	a = od_find(&s, msg->object_id) ? dup(od_find(&s, msg->object_id)->anon_fd) : -1;
	od_answer(&s, msg);
	st = served(p);
	check(st == 0, "H: umount (status %d)", st);
	/*
	 * fscache withdraws the object in its own work, which may finish
	 * after umount returned: llseek, which succeeds while the object
	 * has its file, must turn to ENOBUFS once it is withdrawn.
	 */
	end = now_ms() + 30000;
	do {
		errno = 0;
		ret = lseek(a, 0, SEEK_SET);
	} while (ret >= 0 && now_ms() < end && !usleep(20000));
	check(ret < 0 && errno == ENOBUFS, "H: llseek once withdrawn: ENOBUFS (%s)",
	      strerrorname_np(errno));
	errno = 0;
	ret = pwrite(a, page, 4096, 0);
	check(ret < 0 && errno == ENOBUFS, "H: pwrite after withdrawal: ENOBUFS (%s)",
	      strerrorname_np(errno));
	close(a);
	st = served(start_mount("fsid=simple.img", MNT));
	check(st == 0, "H: remount served (status %d)", st);
}

static void phase_e(int dev)
{
	pid_t r;
	int st;

	r = start_read(MNT "/mid/m0.bin", 0, 4096);
	check(next_of(CACHEFILES_OP_READ), "E: READ read");
	/*
	 * The anonymous fds stay open until the reader has returned: they
	 * keep the dead cache bound, so the page read again after the flush
	 * reaches the backend, which refuses it (EIO). With them closed
	 * first, the cache is withdrawn as the devnode goes and the reader's
	 * errno depends on which comes first (ENOBUFS from fscache once
	 * withdrawn; lifetime's killed daemon).
	 */
	close(dev);
	st = wait_child(r, 30000);
	check(st == EIO, "E: the devnode closed (the object fds still open), the waiting reader gets EIO (status %d)",
	      st);
	if (st < 0)
		kill(r, SIGKILL);
	close_fds_of_daemon();
	st = wait_child(start_cmd("umount " MNT), 60000);
	check(st == 0, "E: umount (status %d)", st);
}

/* "I/O Error" lines cachefiles logged since phase I began. */
static int io_errors(void)
{
	return sh_int("dmesg | sed -n '/cfod: edge phase I/,$p' | grep -c 'CacheFiles: I/O Error'");
}

static void phase_i(void)
{
	int dev = -EBUSY, st, n, ok;
	struct od_obj *o;
	unsigned int id;
	pid_t r, m2;

	for (int i = 0; i < 100 && dev == -EBUSY; i++) {
		dev = dev_open();
		if (dev == -EBUSY)
			usleep(100000);
	}
	check(dev >= 0 && dev_cmd(dev, "tag edge2") == 0 && dev_bind(dev, "edge2") == 0,
	      "I: devnode reopened, bound again (%d)", dev);
	system("echo 'cfod: edge phase I' > /dev/kmsg");
	s = (struct od_server){ .dev = dev };
	st = served(start_mount("fsid=simple.img,domain_id=dd", MNT));
	check(st == 0, "I: mount with domain_id served (status %d)", st);
	/* One page, readahead off: one READ, which the test holds. */
	r = start_read_random(MNT "/big/one.bin", 0, 4096);
	ok = next_of(CACHEFILES_OP_READ) && wait_child(r, 0) == -1;
	check(ok, "I: READ read and held (msg %u), its reader waits", msg->msg_id);
	id = msg->msg_id;
	o = od_find(&s, msg->object_id);
	check(system("echo 2 > /proc/sys/cachefiles/error_injection") == 0, "I: inject I/O errors");
	/*
	 * A cookie new to an existing volume (the domain's): its lookup
	 * meets the injected error, cachefiles_io_error() kills the cache
	 * and flushes; the mount then fails in fscache (ENOBUFS).
	 */
	m2 = start_mount("fsid=meta.img,device=blob.img,domain_id=dd", MNT2);
	st = wait_child(m2, 30000);
	check(st == ENOBUFS, "I: a second mount hits the error and fails: ENOBUFS (status %d)", st);
	if (st < 0)
		kill(m2, SIGKILL);
	n = io_errors();
	check(n == 1, "I: the cache died of one I/O error (%d logged)", n);
	st = wait_child(r, 30000);
	/*
	 * The flush fails the READ with EIO; the page is then read again,
	 * and fscache refuses that on the stopped cache: ENOBUFS (as for the
	 * killed daemon in lifetime). A READ left pending keeps it waiting.
	 */
	check(st == ENOBUFS, "I: the READ pending when the cache died is failed: its reader returns, ENOBUFS (status %d)", st);
	if (st < 0)
		kill(r, SIGKILL);
	errno = 0;
	check(o && ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, id) < 0 && errno == EINVAL,
	      "I: the held READ was flushed from the queue: its READ_COMPLETE gets EINVAL (%s)",
	      strerrorname_np(errno));
	check(dev_cmd(dev, "copen 0,1") == -EIO, "core: I: commands fail with EIO once dead");
	check(dev_read(dev, buf, sizeof(buf)) == 0, "I: nothing left to read");
	system("echo 0 > /proc/sys/cachefiles/error_injection");
	od_close_all(&s);
	check(system("umount " MNT) == 0, "I: umount");
	close(dev);
}

/* Never leave the injection on for the tests after this one. */
static void injection_off(void)
{
	system("echo 0 > /proc/sys/cachefiles/error_injection");
}

int main(void)
{
	struct stat st;
	int dev;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (stat(BLOBS "/simple.img", &st))
		return 1;
	img_size = st.st_size;
	mkdir(MNT2, 0755);
	atexit(injection_off);
	ktap_plan(98 + 11 + !strcmp(backend(), "rust"));
	dev = dev_open();
	if (dev < 0)
		return 1;
	check(dev_cmd(dev, "tag edge") == 0 && dev_bind(dev, "edge") == 0,
	      "tag, dir, bind ondemand (backend %s)", backend());
	check(dev_open() == -EBUSY, "core: second open: EBUSY");
	s.dev = dev;
	phase_a(dev);
	phase_b(dev);
	phase_c(dev);
	phase_d();
	phase_j(dev);
	phase_k(dev);
	phase_f(dev);
	phase_g(dev);
	phase_h();
	phase_e(dev);
	phase_i();
	st.st_size = od_d_state_scan();
	check(st.st_size == 0, "nothing left in D state (%lld)", (long long)st.st_size);
	return ktap_finish();
}
