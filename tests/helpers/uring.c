// Builds, for real, what sockets.py cannot: io_uring rings that make sockets with
// credentials their holder no longer has, and a process whose leader thread exited (same
// protocol as sockets.py).
//
// Run as root inside the pod's network namespace:  uring SCENARIO DST_IP DST_PORT
//   personality  a personality registered while fsgid was 1337, then every id dropped: at
//                `go`, IORING_OP_SOCKET naming it
//   sqpoll       an SQPOLL ring set up while fsgid was 1337, then every id dropped: at `go`,
//                IORING_OP_SOCKET through the SQPOLL thread
//   fixed        a socket made with fsgid 1337 straight into fixed-file slot 0 (in no fd
//                table), then every id dropped: at `go`, connected through the ring
//   fixed-held   the same, connected before `ready` and kept open
//   registered   as personality, the ring then registered by index
//                (IORING_REGISTER_RING_FDS) and its descriptor closed: in no fd table
//   zombie       a socket made with fsgid 1337 held by a second thread, every id dropped,
//                the leader thread exited: at `go`, the thread connects it
// Prints `ready {json}` (pid, the ring's fd), waits for `go`, connects and prints `result
// {json}`: per way, the first line the far end answered (the proxy echoes `x`, the peer
// answers `B`). Then waits for stdin to close.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <grp.h>
#include <pthread.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *sq_flags;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	int sqpoll;
	unsigned enter_flags; // IORING_ENTER_REGISTERED_RING once `fd` is an index
};

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void setup(struct ring *r, unsigned flags)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = flags;
	p.sq_thread_idle = 60000;
	r->fd = syscall(__NR_io_uring_setup, 8, &p);
	if (r->fd < 0)
		die("io_uring_setup");
	r->sqpoll = !!(flags & IORING_SETUP_SQPOLL);
	r->enter_flags = 0;
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	size_t len = sq_len > cq_len ? sq_len : cq_len;
	char *sq = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		die("mmap ring");
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->sq_flags = (unsigned *)(sq + p.sq_off.flags);
	r->cq_head = (unsigned *)(sq + p.cq_off.head);
	r->cq_tail = (unsigned *)(sq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(sq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(sq + p.cq_off.cqes);
	r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED)
		die("mmap sqes");
}

// Submits one request and returns its result.
static int run(struct ring *r, struct io_uring_sqe *req)
{
	unsigned tail = *r->sq_tail;
	unsigned i = tail & *r->sq_mask;
	r->sqes[i] = *req;
	r->sq_array[i] = i;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	unsigned flags = IORING_ENTER_GETEVENTS | r->enter_flags;
	if (r->sqpoll && (__atomic_load_n(r->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_NEED_WAKEUP))
		flags |= IORING_ENTER_SQ_WAKEUP;
	if (syscall(__NR_io_uring_enter, r->fd, r->sqpoll ? 0 : 1, 1, flags, 0, 0) < 0)
		die("io_uring_enter");
	unsigned head = *r->cq_head;
	while (__atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) == head)
		syscall(__NR_io_uring_enter, r->fd, 0, 1, IORING_ENTER_GETEVENTS | r->enter_flags, 0, 0);
	int res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

static int ring_socket(struct ring *r, unsigned short personality, int fixed_slot)
{
	struct io_uring_sqe sqe;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_SOCKET;
	sqe.fd = AF_INET;
	sqe.off = SOCK_STREAM;
	sqe.personality = personality;
	if (fixed_slot >= 0)
		sqe.file_index = fixed_slot + 1;
	int fd = run(r, &sqe);
	if (fd < 0) {
		fprintf(stderr, "IORING_OP_SOCKET: %s\n", strerror(-fd));
		exit(2);
	}
	return fd;
}

static struct sockaddr_in dst;

// Connects (directly, or through the ring on a fixed slot), says a line and returns the
// first line the far end answers, as sockets.py's talk does.
static const char *talk(struct ring *r, int fd, int fixed)
{
	static char buf[32];
	struct timeval tv = { 2, 0 };
	if (!fixed) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 || send(fd, "x\n", 2, 0) != 2)
			return "err";
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
	} else {
		struct io_uring_sqe sqe;
		memset(&sqe, 0, sizeof(sqe));
		sqe.opcode = IORING_OP_CONNECT;
		sqe.fd = fd;
		sqe.flags = IOSQE_FIXED_FILE;
		sqe.addr = (unsigned long)&dst;
		sqe.off = sizeof(dst);
		if (run(r, &sqe) < 0)
			return "err";
		memset(&sqe, 0, sizeof(sqe));
		sqe.opcode = IORING_OP_SEND;
		sqe.fd = fd;
		sqe.flags = IOSQE_FIXED_FILE;
		sqe.addr = (unsigned long)"x\n";
		sqe.len = 2;
		if (run(r, &sqe) != 2)
			return "err";
		memset(&sqe, 0, sizeof(sqe));
		sqe.opcode = IORING_OP_RECV;
		sqe.fd = fd;
		sqe.flags = IOSQE_FIXED_FILE;
		sqe.addr = (unsigned long)buf;
		sqe.len = sizeof(buf) - 1;
		int n = run(r, &sqe);
		buf[n > 0 ? n : 0] = 0;
	}
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	return buf[0] ? buf : "empty";
}

static int zombie_socket = -1;

// The zombie scenario's thread: it waits for `go` and speaks through the socket.
static void *zombie_thread(void *arg)
{
	(void)arg;
	char line[16];
	if (!fgets(line, sizeof(line), stdin) || strncmp(line, "go", 2))
		return 0;
	char plain[32];
	snprintf(plain, sizeof(plain), "%s", talk(0, socket(AF_INET, SOCK_STREAM, 0), 0));
	printf("result {\"new-socket\": \"%s\", \"held\": \"%s\"}\n", plain,
	       talk(0, zombie_socket, 0));
	while (fgets(line, sizeof(line), stdin))
		;
	exit(0);
}

static void drop_all(void)
{
	if (setgroups(0, 0) || setresgid(10001, 10001, 10001) || setresuid(10001, 10001, 10001))
		die("drop");
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	const char *scenario = argv[1];
	dst.sin_family = AF_INET;
	dst.sin_port = htons(atoi(argv[3]));
	inet_pton(AF_INET, argv[2], &dst.sin_addr);
	setvbuf(stdout, 0, _IOLBF, 0);

	struct ring r;
	int personality = 0, fixed = !strncmp(scenario, "fixed", 5);
	const char *held = 0;
	if (!strcmp(scenario, "zombie")) {
		setfsgid(1337);
		zombie_socket = socket(AF_INET, SOCK_STREAM, 0);
		setfsgid(0);
		drop_all();
		pthread_t t;
		if (pthread_create(&t, 0, zombie_thread, 0))
			die("pthread_create");
		printf("ready {\"pid\": %d, \"fds\": {\"held\": %d}}\n", getpid(), zombie_socket);
		syscall(SYS_exit, 0); // the leader thread alone
	}
	int ring_fd = -1;
	if (!strcmp(scenario, "personality") || !strcmp(scenario, "registered")) {
		setup(&r, 0);
		setfsgid(1337);
		personality = syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_PERSONALITY, 0, 0);
		if (personality < 0)
			die("IORING_REGISTER_PERSONALITY");
		setfsgid(0);
		ring_fd = r.fd;
		if (!strcmp(scenario, "registered")) {
			struct io_uring_rsrc_update up = { .offset = -1U, .data = r.fd };
			if (syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_RING_FDS, &up, 1) != 1)
				die("IORING_REGISTER_RING_FDS");
			close(r.fd);
			r.fd = up.offset;
			r.enter_flags = IORING_ENTER_REGISTERED_RING;
			ring_fd = up.offset;
		}
	} else if (!strcmp(scenario, "sqpoll")) {
		setfsgid(1337);
		setup(&r, IORING_SETUP_SQPOLL);
		setfsgid(0);
		ring_fd = r.fd;
	} else if (fixed) {
		setup(&r, 0);
		int slots[1] = { -1 };
		if (syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_FILES, slots, 1) < 0)
			die("IORING_REGISTER_FILES");
		setfsgid(1337);
		ring_socket(&r, 0, 0);
		setfsgid(0);
		if (!strcmp(scenario, "fixed-held"))
			held = talk(&r, 0, 1);
		ring_fd = r.fd;
	} else {
		fprintf(stderr, "unknown scenario %s\n", scenario);
		return 2;
	}
	drop_all();
	printf("ready {\"pid\": %d, \"fds\": {\"ring\": %d}, \"held\": {\"held\": \"%s\"}}\n",
	       getpid(), ring_fd, held ? held : "");
	char line[16];
	if (!fgets(line, sizeof(line), stdin) || strncmp(line, "go", 2))
		return 0;
	char plain[32];
	snprintf(plain, sizeof(plain), "%s", talk(0, socket(AF_INET, SOCK_STREAM, 0), 0));
	const char *ring_answer = "";
	if (!strcmp(scenario, "personality") || !strcmp(scenario, "registered"))
		ring_answer = talk(&r, ring_socket(&r, personality, -1), 0);
	else if (!strcmp(scenario, "sqpoll"))
		ring_answer = talk(&r, ring_socket(&r, 0, -1), 0);
	else if (!strcmp(scenario, "fixed"))
		ring_answer = talk(&r, 0, 1);
	else
		ring_answer = held;
	printf("result {\"new-socket\": \"%s\", \"ring\": \"%s\"}\n", plain, ring_answer);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
