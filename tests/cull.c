// SPDX-License-Identifier: GPL-2.0
/*
 * The cache manager's "inuse" and "cull" commands on an on-demand cache,
 * with this program as the daemon: a cache file committed at unmount serves
 * the next mount without any READ; while mounted it is in use (EBUSY for
 * both commands); once unmounted it is not, and culling removes it; the next
 * mount fetches the data again, byte-identical. Plus the commands' error
 * cases (a name with a slash, a missing name, a culled name). "core:" marks
 * the points decided by the culling code both backends share.
 */
#include "odtest.h"

#define MNT "/mnt/cull"
#define FILE_ "big/one.bin"

static int served(struct od_server *s, const char *cmd)
{
	return od_serve_until(s, start_cmd(cmd), 120000);
}

/* A dup of the anonymous fd of the last OPEN: it tells when the object is
 * withdrawn (llseek then gets ENOBUFS). */
static int watch_fd = -1;

static void seen(struct cachefiles_msg *m)
{
	struct cachefiles_open *load = (void *)m->data;

	if (m->opcode == CACHEFILES_OP_OPEN) {
		if (watch_fd >= 0)
			close(watch_fd);
		watch_fd = dup(load->fd);
	}
}

/*
 * Unmount and answer the CLOSE that follows, then wait until the object is
 * withdrawn: cachefiles sends the CLOSE before it commits the cache file and
 * marks its inode unused, and the unmount may return before either. The
 * object's anonymous fd gets ENOBUFS from llseek once cachefiles has let go
 * of the file (after the commit and the unmarking). 0, or what went wrong.
 */
static int unmount(struct od_server *s)
{
	int st = served(s, "umount " MNT);
	long end = now_ms() + 10000;

	while (s->closes < s->opens && now_ms() < end)
		od_serve_for(s, 100);
	if (st || s->closes < s->opens)
		return st ? st : -2;
	end += 20000;
	while ((st = lseek(watch_fd, 0, SEEK_SET) < 0 ? -errno : 0) == 0 && now_ms() < end)
		usleep(20000);
	st = st == -ENOBUFS ? 0 : -3;
	close(watch_fd);
	watch_fd = -1;
	return st;
}

int main(void)
{
	char dir[256], name[256], cmd[512];
	struct od_server s = { 0 };
	unsigned long reads;
	int dev, st, n;
	FILE *f;

	ktap_plan(14);
	dev = dev_open();
	if (dev < 0 || dev_bind(dev, "cull")) {
		diag("cannot bind");
		return 1;
	}
	s.dev = dev;
	s.seen = seen;

	st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
	st = st ? st : served(&s, "cmp " MNT "/" FILE_ " " TREE "/" FILE_);
	check(st == 0 && s.reads > 0, "first mount reads on demand (%lu READs)", s.reads);
	st = unmount(&s);
	check(st == 0 && s.closes == s.opens, "unmount closes the object (status %d)", st);

	/* The committed cache file: one regular file under the cache. */
	snprintf(cmd, sizeof(cmd), "find /cache/cull-%s/cache -type f", backend());
	n = sh_int("find /cache/cull-$CFOD_BACKEND/cache -type f | wc -l");
	f = popen(cmd, "r");
	if (!f || !fgets(dir, sizeof(dir), f)) {
		check(0, "a cache file was committed (%d files)", n);
		return 1;
	}
	pclose(f);
	dir[strcspn(dir, "\n")] = 0;
	snprintf(name, sizeof(name), "%s", strrchr(dir, '/') + 1);
	*strrchr(dir, '/') = 0;
	check(n == 1 && chdir(dir) == 0, "one cache file committed: %s/%s", dir, name);

	reads = s.reads;
	st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
	st = st ? st : served(&s, "cmp " MNT "/" FILE_ " " TREE "/" FILE_);
	check(st == 0 && s.reads == reads,
	      "the next mount reads from the cache file, no READ (%lu)", s.reads - reads);
	st = dev_cmd(dev, "inuse %s", name);
	check(st == -EBUSY, "core: inuse while mounted: EBUSY (%d)", st);
	st = dev_cmd(dev, "cull %s", name);
	check(st == -EBUSY, "core: cull while mounted: EBUSY (%d)", st);
	st = unmount(&s);
	check(st == 0, "unmount (status %d)", st);

	st = dev_cmd(dev, "inuse %s", name);
	check(st == 0, "core: inuse once unmounted: 0 (%d)", st);
	st = dev_cmd(dev, "cull %s", name);
	check(st == 0 && access(name, F_OK) < 0, "core: cull once unmounted: 0, the file is gone (%d)", st);
	st = dev_cmd(dev, "cull %s", name);
	check(st == -ENOENT, "core: cull of a culled name: ENOENT (%d)", st);
	st = dev_cmd(dev, "inuse ../%s", name);
	n = dev_cmd(dev, "cull a/b");
	check(st == -EINVAL && n == -EINVAL, "core: a name with a slash: EINVAL (%d, %d)", st, n);
	st = dev_cmd(dev, "inuse no-such-object");
	check(st == -ENOENT, "core: inuse of an unknown name: ENOENT (%d)", st);

	reads = s.reads;
	st = od_serve_until(&s, start_mount("fsid=simple.img", MNT), 60000);
	st = st ? st : served(&s, "cmp " MNT "/" FILE_ " " TREE "/" FILE_);
	check(st == 0 && s.reads > reads,
	      "after the cull, the next mount fetches again, identical (%lu READs)", s.reads - reads);
	unmount(&s);
	chdir("/");
	od_close_all(&s);
	close(dev);
	st = od_d_state_scan();
	check(st == 0, "nothing left in D state (%d)", st);
	return ktap_finish();
}
