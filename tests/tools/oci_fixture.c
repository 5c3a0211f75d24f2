// SPDX-License-Identifier: GPL-2.0
/*
 * Helpers for tests/odd_oci.sh, which runs a real registry in the guest:
 *
 *   oci_fixture push PORT REPO DIGEST FILE
 *	uploads FILE as blob DIGEST of REPO to the plain-http registry on
 *	127.0.0.1:PORT through the distribution API (POST an upload, then
 *	PUT its Location with ?digest= and the body); exit 0 on 201.
 *   oci_fixture wait PORT
 *	waits up to 60 s until 127.0.0.1:PORT accepts a connection.
 *   oci_fixture redirect PORT TARGET_PORT
 *	answers every request on 127.0.0.1:PORT with 307 to the same path on
 *	http://127.0.0.1:TARGET_PORT (registries redirect blob GETs to object
 *	storage; the filesystem driver does not), counting them on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int try_dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

static int wait_port(int port)
{
	for (int i = 0; i < 600; i++) {
		int fd = try_dial(port);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		usleep(100000);
	}
	fprintf(stderr, "wait: nothing listens on port %d\n", port);
	return 1;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static void put_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w <= 0) {
			perror("write");
			exit(1);
		}
		p += w;
		n -= w;
	}
}

/* Reads a response head (and a small body) into buf; returns the status. */
static int response(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0) {
		n += r;
		buf[n] = 0;
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	buf[n] = 0;
	if (strncmp(buf, "HTTP/1.", 7) || n < 12)
		return -1;
	return atoi(buf + 9);
}

static int push(int port, const char *repo, const char *digest, const char *file)
{
	char req[4096], resp[8192], loc[2048], *l, *e;
	int fd, st, in;
	struct stat sb;
	char chunk[65536];
	ssize_t r;

	fd = dial(port);
	snprintf(req, sizeof(req),
		 "POST /v2/%s/blobs/uploads/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "Content-Length: 0\r\nConnection: close\r\n\r\n", repo, port);
	put_all(fd, req, strlen(req));
	st = response(fd, resp, sizeof(resp));
	close(fd);
	l = strcasestr(resp, "\r\nLocation: ");
	if (st != 202 || !l) {
		fprintf(stderr, "push: POST answered %d\n%s\n", st, resp);
		return 1;
	}
	l += 12;
	e = strstr(l, "\r\n");
	if (!e || e - l >= (long)sizeof(loc))
		return 1;
	memcpy(loc, l, e - l);
	loc[e - l] = 0;
	/* Location may be absolute: keep the path and query. */
	l = strstr(loc, "://");
	l = l ? strchr(l + 3, '/') : loc;
	if (!l)
		return 1;
	in = open(file, O_RDONLY);
	if (in < 0 || fstat(in, &sb) < 0) {
		perror(file);
		return 1;
	}
	fd = dial(port);
	snprintf(req, sizeof(req),
		 "PUT %s%sdigest=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "Content-Type: application/octet-stream\r\nContent-Length: %lld\r\n"
		 "Connection: close\r\n\r\n", l, strchr(l, '?') ? "&" : "?", digest,
		 port, (long long)sb.st_size);
	put_all(fd, req, strlen(req));
	while ((r = read(in, chunk, sizeof(chunk))) > 0)
		put_all(fd, chunk, r);
	close(in);
	st = response(fd, resp, sizeof(resp));
	close(fd);
	if (st != 201) {
		fprintf(stderr, "push: PUT answered %d\n%s\n", st, resp);
		return 1;
	}
	return 0;
}

static int redirect(int port, int target)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
	unsigned long count = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0) {
		perror("redirect: bind");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("listening\n");
	for (;;) {
		char buf[8192], path[4096], out[8192];
		int c = accept(ls, NULL, NULL);

		if (c < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		/* One request per connection: answer and close. */
		if (response(c, buf, sizeof(buf)) == -1 &&
		    sscanf(buf, "%*s %4095s", path) == 1) {
			snprintf(out, sizeof(out),
				 "HTTP/1.1 307 Temporary Redirect\r\n"
				 "Location: http://127.0.0.1:%d%s\r\n"
				 "Content-Length: 0\r\nConnection: close\r\n\r\n",
				 target, path);
			put_all(c, out, strlen(out));
			printf("redirect %lu %s\n", ++count, path);
		}
		close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "push"))
		return push(atoi(argv[2]), argv[3], argv[4], argv[5]);
	if (argc == 3 && !strcmp(argv[1], "wait"))
		return wait_port(atoi(argv[2]));
	if (argc == 4 && !strcmp(argv[1], "redirect"))
		return redirect(atoi(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: %s push PORT REPO DIGEST FILE | wait PORT | redirect PORT TARGET_PORT\n",
		argv[0]);
	return 2;
}
