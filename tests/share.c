// SPDX-License-Identifier: GPL-2.0
/*
 * Mount variants, with this program as the daemon: three mounts served at
 * once; a data blob shared by two images under one domain_id (one OPEN for
 * it); a duplicate fsid refused (EEXIST in a domain, EBUSY without); a
 * remount asking for another fsid ignored; reads through mmap(); readahead(2)
 * fetching ahead so that the read after it needs no request; a CLOSE for
 * every OPEN once everything is unmounted; and (reference group 18) a
 * multi-device image mounted without device=, its blob named by the device
 * table.
 *
 * "core:" marks points decided by erofs or fscache before any request (the
 * domain and fsid rules, remount): they cannot catch a backend bug.
 */
#include "odtest.h"

#define MA "/mnt/share-a"
#define MB "/mnt/share-b"
#define MC "/mnt/share-c"
#define MD "/mnt/share-d"
#define ME "/mnt/share-e"
#define MF "/mnt/share-f"
#define RA_LEN (128 * 1024)
/*
 * A mount's tree against the test tree (same_tree, tests/lib/ktap.sh: the
 * names and every file's MD5 the host listed, so the host's copy is not
 * read over 9p), outside big/ (big/ is 4.5 of the tree's 5 MiB: over the
 * 4 KiB chunks of blob.img, about 1100 READs, minutes under TCG on a loaded
 * machine; e2e_mount.sh reads those files of these images in full).
 */
#define SAME(M) ". \"$T/lib/ktap.sh\" && same_tree " M " big"
#define TAGGED "meta-tag.img"
#define TAGGED_PATH "/tmp/" TAGGED

/* The OPENs seen, by "volume key/cookie key"; the largest READ. */
static char opened[OD_MAX_OBJS][160];
static int nopened;
static unsigned long max_len;
/* The object of the latest OPEN of blob.img, and the READs for it. */
static unsigned int blob_obj = ~0U;
static unsigned long blob_reads;

static void seen(struct cachefiles_msg *msg)
{
	struct cachefiles_open *load = (void *)msg->data;
	struct cachefiles_read *rd = (void *)msg->data;
	char cookie[128];

	if (msg->opcode == CACHEFILES_OP_OPEN) {
		open_cookie(msg, cookie, sizeof(cookie));
		if (nopened < OD_MAX_OBJS)
			snprintf(opened[nopened++], sizeof(opened[0]), "%.*s/%s",
				 (int)strnlen((char *)load->data, load->volume_key_size),
				 (char *)load->data, cookie);
		if (!strcmp(cookie, "blob.img"))
			blob_obj = msg->object_id;
	}
	if (msg->opcode == CACHEFILES_OP_READ && msg->object_id == blob_obj)
		blob_reads++;
	if (msg->opcode == CACHEFILES_OP_READ && rd->len > max_len)
		max_len = rd->len;
}

/* crc32c as erofs computes its superblock checksum (seed ~0, no final xor). */
static unsigned int crc32c(unsigned int crc, const unsigned char *p, size_t n)
{
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78 : crc >> 1;
	}
	return crc;
}

static unsigned int sb_checksum(unsigned char *img)
{
	unsigned char *sb = img + 1024;
	size_t len = (1u << sb[12]) - 1024;
	unsigned int saved, crc;

	memcpy(&saved, sb + 4, 4);
	memset(sb + 4, 0, 4);
	crc = crc32c(~0u, sb, len);
	memcpy(sb + 4, &saved, 4);
	return crc;
}

/*
 * meta.img's device table has one slot and an empty tag (mkfs.erofs 1.5
 * writes none; erofs then needs device=). TAGGED_PATH is a copy whose slot
 * names blob.img, with the superblock checksum recomputed. 1 if it was made
 * and the checksum computed here verifies on meta.img itself.
 */
static int make_tagged(void)
{
	static unsigned char img[1 << 20];
	unsigned short slotoff;
	unsigned int crc;
	ssize_t n;
	int fd;

	fd = open(BLOBS "/meta.img", O_RDONLY);
	n = fd < 0 ? -1 : read(fd, img, sizeof(img));
	close(fd);
	if (n < 4096 || (size_t)n == sizeof(img))
		return 0;
	memcpy(&crc, img + 1024 + 4, 4);
	if (crc != sb_checksum(img)) {
		diag("meta.img: checksum %08x, computed %08x", crc, sb_checksum(img));
		return 0;
	}
	memcpy(&slotoff, img + 1024 + 88, 2);
	if (img[1024 + 86] != 1 || img[slotoff * 128])
		return 0;
	strcpy((char *)img + slotoff * 128, "blob.img");
	crc = sb_checksum(img);
	memcpy(img + 1024 + 4, &crc, 4);
	fd = open(TAGGED_PATH, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, img, n) != n)
		return 0;
	close(fd);
	return 1;
}

/* As od_answer(), with TAGGED served from TAGGED_PATH. */
static void answer_tagged(struct od_server *s, struct cachefiles_msg *m)
{
	struct cachefiles_open *load = (void *)m->data;
	char name[64];
	struct stat st;
	int i, bfd;

	if (m->opcode != CACHEFILES_OP_OPEN || strcmp(open_cookie(m, name, sizeof(name)), TAGGED)) {
		od_answer(s, m);
		return;
	}
	seen(m);
	s->opens++;
	for (i = 0; i < OD_MAX_OBJS && s->objs[i].anon_fd > 0; i++)
		;
	bfd = open(TAGGED_PATH, O_RDONLY | O_CLOEXEC);
	if (bfd < 0 || fstat(bfd, &st) || i == OD_MAX_OBJS) {
		dev_cmd(s->dev, "copen %u,%d", m->msg_id, -ENOENT);
		close(load->fd);
		return;
	}
	s->objs[i] = (struct od_obj){ m->object_id, load->fd, bfd, st.st_size };
	dev_cmd(s->dev, "copen %u,%lld", m->msg_id, (long long)st.st_size);
}

/* Answers, through answer_tagged(), every request queued now. */
static void answer_queued_tagged(struct od_server *s)
{
	char b[CACHEFILES_MSG_MAX_SIZE];

	while (dev_read(s->dev, b, sizeof(b)) > 0)
		answer_tagged(s, (void *)b);
}

/* od_serve_until(), answering through answer_tagged(). */
static int serve_tagged(struct od_server *s, pid_t child, int timeout_ms)
{
	long end = now_ms() + timeout_ms;

	do {
		int status;

		answer_queued_tagged(s);
		if (waitpid(child, &status, WNOHANG) == child)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		dev_pollin(s->dev, 20);
	} while (now_ms() < end);
	return -1;
}

static int was_opened(int from, const char *name)
{
	for (int i = from; i < nopened; i++)
		if (!strcmp(opened[i], name))
			return 1;
	return 0;
}

/*
 * Serves through answer_tagged() until @name was opened (an OPEN since
 * @from) or @timeout_ms passed: a device's cookie is looked up
 * asynchronously, and its OPEN can come after the mount returned.
 */
static void serve_tagged_until_opened(struct od_server *s, int from, const char *name,
				      int timeout_ms)
{
	long end = now_ms() + timeout_ms;

	while (!was_opened(from, name) && now_ms() < end) {
		answer_queued_tagged(s);
		dev_pollin(s->dev, 100);
	}
}

static int mount_served(struct od_server *s, const char *opts, const char *at)
{
	return od_serve_until(s, start_mount(opts, at), 60000);
}

/* Child: compare files of the mount, read through mmap(), with the tree. */
static int mmap_compare(const char *mnt)
{
	static const char *const files[] = {
		"big/two.bin", "mid/m1.bin", "mid/m4.bin", "small/s3.bin",
		"a/b/c/d/deep.bin",
	};
	static char want[4 << 20];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[256];
		struct stat st;
		char *map;
		int fd, tfd;
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", TREE, files[i]);
		tfd = open(path, O_RDONLY);
		n = tfd < 0 ? -1 : read(tfd, want, sizeof(want));
		snprintf(path, sizeof(path), "%s/%s", mnt, files[i]);
		fd = open(path, O_RDONLY);
		if (n < 0 || fd < 0 || fstat(fd, &st) || st.st_size != n)
			return 1;
		map = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED || memcmp(map, want, n))
			return 2;
		munmap(map, n);
		close(fd);
		close(tfd);
	}
	return 0;
}

/* Child: readahead(2) of the first RA_LEN bytes of a file. */
static int do_readahead(const char *path)
{
	int fd = open(path, O_RDONLY);

	return fd < 0 || readahead(fd, 0, RA_LEN) < 0 ? 1 : 0;
}

/* Child: the first RA_LEN bytes of a mounted file equal the tree's. */
static int compare_head(const char *mnt, const char *file)
{
	static char a[RA_LEN], b[RA_LEN];
	char path[256];
	int fa, fb;

	snprintf(path, sizeof(path), "%s/%s", mnt, file);
	fa = open(path, O_RDONLY);
	snprintf(path, sizeof(path), "%s/%s", TREE, file);
	fb = open(path, O_RDONLY);
	if (fa < 0 || fb < 0 || pread(fa, a, RA_LEN, 0) != RA_LEN ||
	    pread(fb, b, RA_LEN, 0) != RA_LEN)
		return 1;
	return memcmp(a, b, RA_LEN) ? 2 : 0;
}

static pid_t start_fn(int (*fn)(const char *, const char *), const char *a, const char *b)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn(a, b));
	return pid;
}

static int mmap_fn(const char *a, const char *b) { return mmap_compare(a); }
static int ra_fn(const char *a, const char *b) { return do_readahead(a); }
static int head_fn(const char *a, const char *b) { return compare_head(a, b); }

static int mounted_with(const char *mnt, const char *opt)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "grep ' %s erofs ' /proc/mounts | grep -c '%s'", mnt, opt);
	return sh_int(cmd) == 1;
}

int main(void)
{
	struct od_server s = { 0 };
	unsigned long reads;
	int dev, st, n0;

	ktap_plan(20);
	dev = dev_open();
	if (dev < 0 || dev_bind(dev, "share")) {
		diag("cannot bind");
		return 1;
	}
	s.dev = dev;
	s.seen = seen;

	/* Two images sharing one data blob in one domain. */
	st = mount_served(&s, "fsid=meta.img,device=blob.img,domain_id=dom", MA);
	/*
	 * The extra device's cookie is looked up asynchronously: its OPEN can
	 * come after the mount returned (seen on the race kernel with three
	 * guests on two cores), and must not be counted for the next mount.
	 */
	if (st == 0)
		serve_tagged_until_opened(&s, 0, "erofs,dom/blob.img", 60000);
	check(st == 0 && was_opened(0, "erofs,dom/meta.img") && was_opened(0, "erofs,dom/blob.img"),
	      "domain mount: meta.img and blob.img opened in volume erofs,dom (status %d)", st);
	n0 = nopened;
	st = mount_served(&s, "fsid=meta2.img,device=blob.img,domain_id=dom", MB);
	check(st == 0, "second image in the same domain mounts (status %d)", st);
	check(nopened == n0 + 1 && was_opened(n0, "erofs,dom/meta2.img"),
	      "the shared blob is not opened again: one OPEN, for meta2.img (%d)", nopened - n0);
	st = od_serve_until(&s, start_sh("(" SAME(MA) ") & p=$!; (" SAME(MB) "); r=$?; "
					 "wait $p && [ $r = 0 ]"), 300000);
	check(st == 0, "both images identical outside big/, read at once (status %d)", st);

	/* A duplicate fsid. */
	n0 = nopened;
	st = mount_served(&s, "fsid=meta.img,domain_id=dom", MC);
	check(st == EEXIST && nopened == n0,
	      "core: the same fsid again in the domain: EEXIST, no OPEN (status %d)", st);
	st = mount_served(&s, "fsid=simple.img", MD);
	check(st == 0 && was_opened(n0, "erofs,simple.img/simple.img"),
	      "a third mount at once, in its own volume (status %d)", st);
	n0 = nopened;
	st = mount_served(&s, "fsid=simple.img", ME);
	check(st == EBUSY && nopened == n0,
	      "core: the same fsid again without a domain: EBUSY, no OPEN (status %d)", st);

	/* Remount asking for another fsid: ignored. */
	{
		pid_t p = fork();

		if (p == 0)
			_exit(mount("none", MD, "erofs", MS_REMOUNT | MS_RDONLY,
				    "fsid=meta.img") ? errno : 0);
		st = od_serve_until(&s, p, 60000);
	}
	check(st == 0 && nopened == n0, "core: remount with fsid=meta.img succeeds, no OPEN (status %d)", st);
	check(mounted_with(MD, "fsid=simple.img[, ]"), "core: the mount keeps fsid=simple.img");

	/* mmap() reads. */
	reads = s.reads;
	st = od_serve_until(&s, start_fn(mmap_fn, MD, NULL), 120000);
	check(st == 0 && s.reads > reads,
	      "mmap() reads byte-identical, served on demand (status %d, %lu READs)",
	      st, s.reads - reads);

	/* readahead(2): the READs fetch ahead, the read after needs none. */
	reads = s.reads;
	max_len = 0;
	st = od_serve_until(&s, start_fn(ra_fn, MD "/big/one.bin", NULL), 60000);
	check(st == 0 && s.reads > reads && max_len > (unsigned long)sysconf(_SC_PAGESIZE),
	      "readahead(2) is served with READs of more than a page (%lu READs, largest %lu)",
	      s.reads - reads, max_len);
	reads = s.reads;
	st = od_serve_until(&s, start_fn(head_fn, MD, "big/one.bin"), 60000);
	check(st == 0 && s.reads == reads,
	      "reading what readahead fetched needs no READ (status %d, %lu READs)",
	      st, s.reads - reads);

	/* Unmount everything: every object is closed. */
	st = od_serve_until(&s, start_sh("umount " MB " && umount " MA " && umount " MD), 60000);
	check(st == 0, "unmount all three (status %d)", st);
	{
		long end = now_ms() + 10000;

		while (s.closes < s.opens && now_ms() < end)
			od_serve_for(&s, 100);
	}
	check(s.opens == 4 && s.closes == s.opens, "a CLOSE for each of the %lu OPENs (%lu)",
	      s.opens, s.closes);
	st = mount_served(&s, "fsid=simple.img", ME);
	check(st == 0 && od_serve_until(&s, start_sh("cmp " ME "/big/two.bin " TREE "/big/two.bin && umount " ME),
			       60000) == 0,
	      "the refused mounts left nothing behind: simple.img mounts and reads again (status %d)",
	      st);

	/* Group 18: the device table names the blob, no device= needed. */
	n0 = nopened;
	st = mount_served(&s, "fsid=meta.img", MF);
	check(st == EINVAL && nopened == n0 + 1,
	      "core: meta.img without device=: its slot has no tag, erofs refuses it: EINVAL (status %d)",
	      st);
	check(make_tagged(), "a copy of meta.img whose device slot is tagged blob.img (checksum redone)");
	/*
	 * Mounted in domain dom: blob.img's object there committed its cache
	 * file at the unmounts above, with every chunk read there, so the
	 * blob the table names is opened (an OPEN) and read from that file
	 * (no READ for it), and only meta-tag.img, new, is fetched. (Served
	 * on demand, the blob's 1280 chunk READs cost minutes under TCG; the
	 * READ path for it is the first part's.)
	 */
	n0 = nopened;
	reads = s.reads;
	blob_reads = 0;
	st = serve_tagged(&s, start_mount("fsid=" TAGGED ",domain_id=dom", MF), 60000);
	/* blob.img, the table's device, as the first domain mount's device= */
	if (st == 0 && !was_opened(n0, "erofs,dom/blob.img")) {
		serve_tagged_until_opened(&s, n0, "erofs,dom/blob.img", 60000);
		if (was_opened(n0, "erofs,dom/blob.img"))
			diag("blob.img's OPEN came after the mount returned");
	}
	check(st == 0 && nopened == n0 + 2 && was_opened(n0, "erofs,dom/" TAGGED) &&
	      was_opened(n0, "erofs,dom/blob.img"),
	      "device-table mount without device=: " TAGGED
	      " and, from its table, blob.img opened (status %d, %d OPENs)",
	      st, nopened - n0);
	st = serve_tagged(&s, start_sh("(" SAME(MF) ") && umount " MF), 300000);
	check(st == 0 && blob_reads == 0 && s.reads > reads,
	      "device-table mount: every file outside big/ identical; no READ for blob.img (its cache file), %lu for " TAGGED " (status %d, %lu for blob.img)",
	      s.reads - reads, st, blob_reads);
	unlink(TAGGED_PATH);
	od_close_all(&s);
	close(dev);
	st = od_d_state_scan();
	check(st == 0, "nothing left in D state (%d)", st);
	return ktap_finish();
}
