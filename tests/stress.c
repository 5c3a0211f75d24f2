// SPDX-License-Identifier: GPL-2.0
/*
 * stress: several daemon threads serve a mount while a chaos thread
 * closes anonymous fds (forcing reopens) and issues "restore" at random,
 * and another hammers poll(); the tree must read back identical.
 *   stress CACHEDIR BLOBDIR TREEDIR SECONDS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/cachefiles.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXOBJ 4096
static int dev;
static const char *blobdir;
static volatile int stop, chaos_on;
static pthread_rwlock_t fdlock = PTHREAD_RWLOCK_INITIALIZER;
static int anon_of[MAXOBJ], blob_of[MAXOBJ];
static unsigned long n_open, n_read, n_close, n_restore, n_kill, n_badfd;

static void command(const char *s)
{
	if (write(dev, s, strlen(s)) < 0 && errno != EINVAL)
		fprintf(stderr, "# '%s': %s\n", s, strerror(errno));
}

static void *server(void *arg)
{
	char mb[1024];
	static __thread char *buf;

	if (posix_memalign((void **)&buf, 4096, 1 << 20))
		return NULL;
	while (!stop) {
		struct pollfd p = { .fd = dev, .events = POLLIN };

		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t len = read(dev, mb, sizeof(mb));

		if (len <= 0)
			continue;
		struct cachefiles_msg *m = (void *)mb;

		if (m->object_id >= MAXOBJ)
			continue;
		pthread_rwlock_wrlock(&fdlock);
		if (m->opcode == CACHEFILES_OP_OPEN) {
			struct cachefiles_open *o = (void *)m->data;
			char name[300], path[700], c[64];
			struct stat st;

			memcpy(name, o->data + o->volume_key_size, o->cookie_key_size);
			name[o->cookie_key_size] = 0;
			snprintf(path, sizeof(path), "%s/%s", blobdir, name);
			if (anon_of[m->object_id] > 0)
				close(anon_of[m->object_id]);
			if (blob_of[m->object_id] > 0)
				close(blob_of[m->object_id]);
			anon_of[m->object_id] = o->fd;
			fcntl(o->fd, F_SETFD, FD_CLOEXEC);
			blob_of[m->object_id] = open(path, O_RDONLY | O_CLOEXEC);
			fstat(blob_of[m->object_id], &st);
			snprintf(c, sizeof(c), "copen %u,%lld", m->msg_id, (long long)st.st_size);
			command(c);
			n_open++;
			pthread_rwlock_unlock(&fdlock);
			continue;
		}
		if (m->opcode == CACHEFILES_OP_CLOSE) {
			if (anon_of[m->object_id] > 0)
				close(anon_of[m->object_id]);
			anon_of[m->object_id] = -1;
			n_close++;
			pthread_rwlock_unlock(&fdlock);
			continue;
		}
		pthread_rwlock_unlock(&fdlock);
		pthread_rwlock_rdlock(&fdlock);
		{
			struct cachefiles_read *r = (void *)m->data;
			int a = anon_of[m->object_id], b = blob_of[m->object_id];
			size_t want = r->len > (1 << 20) ? (1 << 20) : r->len;

			if (a <= 0 || b <= 0) {
				n_badfd++;
			} else {
				ssize_t got = pread(b, buf, want, r->off);

				if (got > 0)
					pwrite(a, buf, got, r->off);
				ioctl(a, CACHEFILES_IOC_READ_COMPLETE, m->msg_id);
			}
			n_read++;
		}
		pthread_rwlock_unlock(&fdlock);
	}
	return NULL;
}

static void *chaos(void *arg)
{
	unsigned int seed = 1;

	while (!stop) {
		usleep(20000 + rand_r(&seed) % 150000);
		if (!chaos_on)
			continue;
		if (rand_r(&seed) % 3 == 0) {
			pthread_rwlock_wrlock(&fdlock);
			for (int i = 0; i < MAXOBJ; i++) {
				if (anon_of[i] > 0 && rand_r(&seed) % 2) {
					close(anon_of[i]);
					anon_of[i] = -1;
					n_kill++;
				}
			}
			pthread_rwlock_unlock(&fdlock);
		}
		command("restore");
		n_restore++;
	}
	return NULL;
}

static void *poller(void *arg)
{
	while (!stop) {
		struct pollfd p = { .fd = dev, .events = POLLIN };

		poll(&p, 1, 1);
	}
	return NULL;
}

static int run(const char *sh)
{
	pid_t p = fork();
	int st;

	if (!p) {
		execl("/bin/sh", "sh", "-c", sh, NULL);
		_exit(127);
	}
	waitpid(p, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int main(int argc, char **argv)
{
	pthread_t th[5];
	char c[512];
	int rc, rounds, fails = 0, t = 0;

	if (argc < 5)
		return 2;
	/* Results must survive a kill by the runner's timeout. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	blobdir = argv[2];
	rounds = atoi(argv[4]);
	for (int round = 0; round < rounds; round++) {
		stop = 0;
		chaos_on = 0;
		memset(anon_of, 0, sizeof(anon_of));
		memset(blob_of, 0, sizeof(blob_of));
		dev = open("/dev/cachefiles", O_RDWR | O_CLOEXEC);
		if (dev < 0) {
			printf("not ok %d round %d: open devnode: %s\n", ++t, round, strerror(errno));
			fails++;
			sleep(1);
			continue;
		}
		snprintf(c, sizeof(c), "dir %s-%d", argv[1], round);
		mkdir(c + 4, 0700);
		command(c);
		command("tag stress");
		command("bind ondemand");
		for (int i = 0; i < 3; i++)
			pthread_create(&th[i], NULL, server, NULL);
		pthread_create(&th[3], NULL, chaos, NULL);
		pthread_create(&th[4], NULL, poller, NULL);

		rc = run("mount -t erofs none -o fsid=simple.img /mnt/stress && "
			 "mount -t erofs none -o fsid=meta.img,device=blob.img /mnt/stress2");
		printf("%sok %d round %d: mounts\n", rc ? "not " : "", ++t, round);
		fails += !!rc;
		chaos_on = 1;
		snprintf(c, sizeof(c),
			 "diff -r %s /mnt/stress >/dev/null & p1=$!; diff -r %s /mnt/stress2 >/dev/null & p2=$!; "
			 "wait $p1 && wait $p2", argv[3], argv[3]);
		rc = run(c);
		printf("%sok %d round %d: trees identical under chaos\n", rc ? "not " : "", ++t, round);
		fails += !!rc;
		chaos_on = 0;
		rc = run("umount /mnt/stress /mnt/stress2");
		printf("%sok %d round %d: umount\n", rc ? "not " : "", ++t, round);
		stop = 1;
		for (int i = 0; i < 5; i++)
			pthread_join(th[i], NULL);
		for (int i = 0; i < MAXOBJ; i++) {
			if (anon_of[i] > 0)
				close(anon_of[i]);
			if (blob_of[i] > 0)
				close(blob_of[i]);
		}
		close(dev);
		printf("# open %lu read %lu close %lu restore %lu fds killed %lu badfd %lu\n",
		       n_open, n_read, n_close, n_restore, n_kill, n_badfd);
	}
	printf("1..%d\n", t);
	return fails ? 1 : 0;
}
