// SPDX-License-Identifier: GPL-2.0
/*
 * od-serve: a minimal, single-threaded on-demand daemon for the tests.
 *
 *   od-serve [-t TAG] [-p PIDFILE] CACHEDIR BLOBDIR
 *
 * Binds /dev/cachefiles in on-demand mode with CACHEDIR as the cache
 * directory and serves every blob from BLOBDIR/<cookie key>. Writes PIDFILE
 * once bound, so a test knows when it may mount. Exits on SIGTERM/SIGINT.
 */
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
#include <sys/stat.h>
#include <unistd.h>

struct object {
	unsigned int id;
	int anon_fd;
	int blob_fd;
	off_t size;
	struct object *next;
};

static struct object *objects;
static volatile sig_atomic_t stop;
static const char *blobdir;
static unsigned long n_open, n_read, n_close, bytes, asked;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "od-serve: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, ": %s\n", strerror(errno));
	va_end(ap);
	exit(1);
}

static void command(int dev, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (write(dev, buf, n) != n)
		fprintf(stderr, "od-serve: '%s': %s\n", buf, strerror(errno));
}

static struct object *find(unsigned int id)
{
	struct object *o;

	for (o = objects; o; o = o->next)
		if (o->id == id)
			return o;
	return NULL;
}

static void handle_open(int dev, struct cachefiles_msg *msg)
{
	struct cachefiles_open *load = (void *)msg->data;
	char name[300], path[4400];
	struct object *o;
	struct stat st;
	int blob_fd;
	size_t klen;

	n_open++;
	klen = load->cookie_key_size;
	if (klen >= sizeof(name))
		klen = sizeof(name) - 1;
	memcpy(name, load->data + load->volume_key_size, klen);
	name[klen] = 0;
	snprintf(path, sizeof(path), "%s/%s", blobdir, name);
	blob_fd = open(path, O_RDONLY);
	if (blob_fd < 0 || fstat(blob_fd, &st) < 0) {
		fprintf(stderr, "od-serve: no blob %s\n", path);
		command(dev, "copen %u,%d", msg->msg_id, -ENOENT);
		close(load->fd);
		if (blob_fd >= 0)
			close(blob_fd);
		return;
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		command(dev, "copen %u,%d", msg->msg_id, -ENOMEM);
		close(load->fd);
		close(blob_fd);
		return;
	}
	o->id = msg->object_id;
	o->anon_fd = load->fd;
	o->blob_fd = blob_fd;
	o->size = st.st_size;
	o->next = objects;
	objects = o;
	command(dev, "copen %u,%lld", msg->msg_id, (long long)st.st_size);
}

static void handle_read(struct cachefiles_msg *msg)
{
	struct cachefiles_read *load = (void *)msg->data;
	struct object *o = find(msg->object_id);
	static char buf[1 << 20] __attribute__((aligned(4096)));
	unsigned long long off = load->off, end = load->off + load->len;

	n_read++;
	asked += load->len;
	if (!o) {
		fprintf(stderr, "od-serve: READ for unknown object %u\n",
			msg->object_id);
		return;
	}
	if (end > (unsigned long long)o->size)
		end = o->size;
	while (off < end) {
		size_t n = end - off > sizeof(buf) ? sizeof(buf) : end - off;
		ssize_t r = pread(o->blob_fd, buf, n, off), w, done = 0;

		if (r <= 0)
			break;
		while (done < r) {
			w = pwrite(o->anon_fd, buf + done, r - done, off + done);
			if (w <= 0) {
				fprintf(stderr, "od-serve: pwrite: %s\n",
					strerror(errno));
				goto complete;
			}
			done += w;
		}
		bytes += r;
		off += r;
	}
complete:
	if (ioctl(o->anon_fd, CACHEFILES_IOC_READ_COMPLETE, msg->msg_id) < 0)
		fprintf(stderr, "od-serve: READ_COMPLETE %u: %s\n",
			msg->msg_id, strerror(errno));
}

static void handle_close(struct cachefiles_msg *msg)
{
	struct object **p, *o;

	n_close++;
	for (p = &objects; (o = *p); p = &o->next) {
		if (o->id == msg->object_id) {
			*p = o->next;
			close(o->anon_fd);
			close(o->blob_fd);
			free(o);
			return;
		}
	}
}

static void on_signal(int sig)
{
	stop = 1;
}

int main(int argc, char **argv)
{
	const char *tag = NULL, *pidfile = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	char buf[CACHEFILES_MSG_MAX_SIZE];
	struct cachefiles_msg *msg = (void *)buf;
	int dev, opt;

	while ((opt = getopt(argc, argv, "t:p:")) != -1) {
		if (opt == 't')
			tag = optarg;
		else if (opt == 'p')
			pidfile = optarg;
		else
			return 2;
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: od-serve [-t TAG] [-p PIDFILE] CACHEDIR BLOBDIR\n");
		return 2;
	}
	blobdir = argv[optind + 1];
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	dev = open("/dev/cachefiles", O_RDWR);
	if (dev < 0)
		die("open /dev/cachefiles");
	command(dev, "dir %s", argv[optind]);
	if (tag)
		command(dev, "tag %s", tag);
	if (write(dev, "bind ondemand", 13) != 13)
		die("bind ondemand");
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");

		if (!f)
			die("%s", pidfile);
		fprintf(f, "%d\n", getpid());
		fclose(f);
	}

	while (!stop) {
		struct pollfd pfd = { .fd = dev, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 1000) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (;;) {
			n = read(dev, buf, sizeof(buf));
			if (n <= 0)
				break;
			switch (msg->opcode) {
			case CACHEFILES_OP_OPEN:
				handle_open(dev, msg);
				break;
			case CACHEFILES_OP_READ:
				handle_read(msg);
				break;
			case CACHEFILES_OP_CLOSE:
				handle_close(msg);
				break;
			}
		}
		if (n < 0 && errno != EINTR)
			fprintf(stderr, "od-serve: read: %s\n", strerror(errno));
	}
	fprintf(stderr,
		"od-serve: open %lu read %lu close %lu bytes %lu asked %lu\n",
		n_open, n_read, n_close, bytes, asked);
	return 0;
}
