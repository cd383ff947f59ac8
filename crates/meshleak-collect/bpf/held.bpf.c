// SPDX-License-Identifier: GPL-2.0
//
// What every task's open files are, as the kernel judges them: a `task_file` iterator that
// writes one fixed-size record per socket (with its file's f_cred, which owner matches
// compare and /proc cannot show) and per io_uring ring (its registered personalities, its
// SQPOLL credentials and the sockets in its fixed-file table, which are in no fd table).
// Read-only: it only reads kernel memory and writes records to its own seq_file.
//
// Structures are declared here, trimmed to the fields read, with preserve_access_index:
// libbpf-style CO-RE relocations let the loader find each field in the running kernel's
// BTF, so the object does not depend on the build machine's kernel. Each struct a read
// starts from costs the loader a search of the kernel's whole BTF (some 5 ms): reads go
// through structs already named where they can.

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define CORE __attribute__((preserve_access_index))

typedef struct { int val; } atomic_t;
typedef struct { __u32 val; } kuid_t;
typedef struct { __u32 val; } kgid_t;
typedef struct { __u64 val; } kernel_cap_t;

struct ns_common { unsigned int inum; } CORE;
struct net { struct ns_common ns; } CORE;
typedef struct { struct net *net; } possible_net_t;
struct cred {
	kuid_t fsuid;
	kgid_t fsgid;
	kernel_cap_t cap_effective;
} CORE;
struct qstr { const unsigned char *name; } CORE;
struct dentry { struct qstr d_name; } CORE;
struct path { struct dentry *dentry; } CORE;
struct inode { unsigned short i_mode; kuid_t i_uid; kgid_t i_gid; unsigned long i_ino; } CORE;
struct file {
	struct path f_path;
	struct inode *f_inode;
	const struct cred *f_cred;
	void *private_data;
} CORE;
struct in6_addr { union { __u8 u6_addr8[16]; } in6_u; } CORE;
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	unsigned char skc_reuse : 4;
	unsigned char skc_reuseport : 1;
	unsigned char skc_ipv6only : 1;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} CORE;
struct socket;
struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket;
	__u32 sk_mark;
	__u16 sk_protocol;
	__u16 sk_type;
} CORE;
struct socket { short type; struct sock *sk; struct file *file; } CORE;
struct unix_sock { struct sock sk; struct sock *peer; struct sock *listener; } CORE;
struct upid { int nr; } CORE;
struct pid { unsigned int level; struct upid numbers[1]; } CORE;
struct nsproxy { struct net *net_ns; } CORE;
struct io_uring_task { struct file *registered_rings[16]; } CORE;
struct kernfs_node { __u64 id; } CORE;
struct cgroup { struct kernfs_node *kn; } CORE;
struct css_set { struct cgroup *dfl_cgrp; } CORE;
struct task_struct {
	int pid;
	int tgid;
	struct pid *thread_pid;
	struct task_struct *group_leader;
	struct nsproxy *nsproxy;
	struct io_uring_task *io_uring;
	struct css_set *cgroups;
} CORE;
struct xarray { void *xa_head; } CORE;
struct xa_node { unsigned char shift; void *slots[64]; } CORE;
struct io_rsrc_node { unsigned long file_ptr; } CORE;
struct io_rsrc_data { unsigned int nr; struct io_rsrc_node **nodes; } CORE;
struct io_file_table { struct io_rsrc_data data; } CORE;
struct io_ring_ctx {
	struct io_file_table file_table;
	const struct cred *sq_creds;
	struct xarray personalities;
} CORE;
struct seq_file;
// The iterators' contexts are a fixed ABI (each field an 8-byte slot, the verifier
// checks every access): no relocation needed, so none paid for.
struct bpf_iter_meta { struct seq_file *seq; };
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};
struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd __attribute__((aligned(8)));
	struct file *file;
};

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10

// What a record describes.
#define REC_SOCKET 1      // a socket in the task's fd table
#define REC_FIXED 2       // a socket in a ring's fixed-file table (slot = its index)
#define REC_PERSONALITY 3 // a ring's registered personality (slot = its id)
#define REC_SQPOLL 4      // the credentials of a ring's SQPOLL thread
#define REC_RING 5        // a ring itself; flags say what could not be read
#define REC_TASK 6        // a process (its leader thread): its cgroup

// REC_RING flags.
#define RING_PERSONALITIES_CUT 1 // more personalities than one xarray node holds
#define RING_FIXED_CUT 2         // more fixed files than one pass reads
#define RING_REGISTERED 4        // registered (IORING_REGISTER_RING_FDS): fd is its index,
                                 // ino its inode; its contents are not read

// At most this many fixed-file slots are read per ring, and at most MAX_FIXED_SOCKETS
// sockets among them are written: a seq_file takes one object's records in one 32 KiB
// buffer (PAGE_SIZE << 3), so one ring's output must stay below it.
#define MAX_FIXED_SLOTS 4096
#define MAX_FIXED_SOCKETS 160
// The io_uring file pointer keeps flags in its low bits: two or three of them, by kernel
// version (FFS_NOWAIT, FFS_ISREG, once FFS_SCM); a struct file is aligned well beyond.
#define FFS_MASK 7UL

struct record {
	__u32 kind;
	__u32 tgid; // as the reader's pid namespace numbers it
	__u32 tid;
	__u32 fd;
	__u32 slot;
	__u32 flags;
	__u32 uid; // f_cred (or the personality's cred): fsuid, fsgid, global ids
	__u32 gid;
	__u32 inode_uid; // the inode's owner, as stat shows it
	__u32 inode_gid;
	__u64 ino;
	__u64 cap_eff;
	__u32 netns; // the socket's network namespace's inode
	__u32 pad0;
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 state;
	__u16 lport; // host order
	__u16 rport;
	__u8 laddr[16]; // IPv4 in the first 4 bytes
	__u8 raddr[16];
	__u64 peer_ino; // a unix socket's peer
	__u32 peer_netns;
	__u32 task_netns; // the network namespace the holding task lives in
	__u32 mark;       // SO_MARK
	__u32 sock_flags; // SOCK_V6ONLY
	__u64 cgroup_id;  // REC_TASK: its cgroup v2 (kernfs id), whose BPF programs act first
};

// meshleak-core's taskfiles::RECORD_SIZE.
_Static_assert(sizeof(struct record) == 144, "the record layout meshleak-core decodes");

#define SOCK_V6ONLY 1

char LICENSE[] SEC("license") = "GPL";

// A task's pid as the reader sees it: the iterator visits the tasks of the reader's pid
// namespace, and the reader (whose read() runs this program) is at level `level`.
static __always_inline __u32 pid_in_ns(struct task_struct *task, unsigned int level)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	if (!pid || level > BPF_CORE_READ(pid, level) || level > 31)
		return 0;
	struct upid up;
	if (bpf_probe_read_kernel(&up, sizeof(up), &pid->numbers[level]))
		return 0;
	return up.nr;
}

static __always_inline void fill_cred(struct record *r, const struct cred *cred)
{
	r->uid = BPF_CORE_READ(cred, fsuid.val);
	r->gid = BPF_CORE_READ(cred, fsgid.val);
	// 8 bytes whatever the layout: a u64 from 6.3, two u32 words before.
	BPF_CORE_READ_INTO(&r->cap_eff, cred, cap_effective);
}

static __always_inline __u64 sock_ino(struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

// Fills the socket fields of a record for the file at `addr`; 0 when it is not a socket.
// Global, so the verifier checks it once rather than at every call on every path (the
// fixed-file loop would otherwise exceed its limits). It takes the file as a number, as
// global functions cannot take kernel pointers: every read goes through probe_read.
__noinline int fill_socket(struct record *r, __u64 addr)
{
	struct file *file = (void *)addr;
	if (!r)
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (!inode || (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	r->ino = BPF_CORE_READ(inode, i_ino);
	r->inode_uid = BPF_CORE_READ(inode, i_uid.val);
	r->inode_gid = BPF_CORE_READ(inode, i_gid.val);
	fill_cred(r, BPF_CORE_READ(file, f_cred));
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 1;
	r->type = BPF_CORE_READ(sock, type);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 1;
	r->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	r->protocol = BPF_CORE_READ(sk, sk_protocol);
	r->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	r->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	r->mark = BPF_CORE_READ(sk, sk_mark);
	if (r->family == AF_INET || r->family == AF_INET6) {
		r->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		__be16 dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
		r->rport = (__u16)((dport >> 8) | (dport << 8));
		if (r->family == AF_INET) {
			__be32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
			__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
			__builtin_memcpy(r->laddr, &l, 4);
			__builtin_memcpy(r->raddr, &d, 4);
		} else {
			BPF_CORE_READ_INTO(&r->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
			BPF_CORE_READ_INTO(&r->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
			if (BPF_CORE_READ_BITFIELD_PROBED(&sk->__sk_common, skc_ipv6only))
				r->sock_flags |= SOCK_V6ONLY;
		}
	} else if (r->family == AF_UNIX) {
		struct unix_sock *u = (void *)sk;
		struct sock *peer = BPF_CORE_READ(u, peer);
		if (peer) {
			r->peer_ino = sock_ino(peer);
			// Not accepted yet: the connection waits in its listener's queue, and the
			// listener's holder is who will take it (6.10+ keeps the listener).
			if (!r->peer_ino && bpf_core_field_exists(u->listener)) {
				struct unix_sock *embryo = (void *)peer;
				struct sock *listener = BPF_CORE_READ(embryo, listener);
				if (listener)
					r->peer_ino = sock_ino(listener);
			}
			r->peer_netns = BPF_CORE_READ(peer, __sk_common.skc_net.net, ns.inum);
		}
	}
	return 1;
}

static __always_inline int is_ring(struct file *file)
{
	char name[12] = {};
	const unsigned char *p = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	if (!p || bpf_probe_read_kernel_str(name, sizeof(name), p) != 11)
		return 0;
	const char want[] = "[io_uring]";
	for (int i = 0; i < 11; i++)
		if (name[i] != want[i])
			return 0;
	return 1;
}

struct ring_walk {
	struct seq_file *seq;
	struct record *r;
	struct io_rsrc_node **nodes;
};

// Sockets written for the ring being walked. A global, not a field of the walk: the
// verifier does not track a map value's contents, so the loop's states converge instead of
// being explored once per count.
__u32 fixed_written = 0;

static long fixed_slot(__u64 i, struct ring_walk *w)
{
	struct io_rsrc_node *node = 0;
	if (bpf_probe_read_kernel(&node, sizeof(node), &w->nodes[i]) || !node)
		return 0;
	struct file *file = (void *)(BPF_CORE_READ(node, file_ptr) & ~FFS_MASK);
	if (!file)
		return 0;
	struct record *r = w->r;
	__builtin_memset(&r->flags, 0, sizeof(*r) - __builtin_offsetof(struct record, flags));
	if (!fill_socket(r, (__u64)file))
		return 0;
	r->kind = REC_FIXED;
	r->slot = i;
	bpf_seq_write(w->seq, r, sizeof(*r));
	if (++fixed_written >= MAX_FIXED_SOCKETS)
		return 1;
	return 0;
}

struct personality_walk {
	struct seq_file *seq;
	struct record *r;
	struct xa_node *node;
};

static long personality(__u64 i, struct personality_walk *w)
{
	void *entry = 0;
	if (bpf_probe_read_kernel(&entry, sizeof(entry), &w->node->slots[i & 63]) || !entry)
		return 0;
	if (((unsigned long)entry & 3) == 2)
		return 0;
	w->r->kind = REC_PERSONALITY;
	w->r->slot = i;
	fill_cred(w->r, entry);
	bpf_seq_write(w->seq, w->r, sizeof(*w->r));
	return 0;
}

struct registered_walk {
	struct seq_file *seq;
	struct record *r;
	struct file **rings;
};

// A ring registered with IORING_REGISTER_RING_FDS: requests reach it by index, also once
// its descriptor is closed, so it may be in no fd table at all.
static long registered_ring(__u64 i, struct registered_walk *w)
{
	struct file *ring = 0;
	if (bpf_probe_read_kernel(&ring, sizeof(ring), &w->rings[i & 15]) || !ring)
		return 0;
	struct record *r = w->r;
	r->kind = REC_RING;
	r->fd = i;
	r->flags = RING_REGISTERED;
	r->ino = BPF_CORE_READ(ring, f_inode, i_ino);
	bpf_seq_write(w->seq, r, sizeof(*r));
	return 0;
}

SEC("iter/task_file")
int held_files(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	// Most files are neither sockets nor anonymous inodes (a ring's has no type bits):
	// they are left at the first read.
	unsigned short type = BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT;
	if (type != S_IFSOCK && type != 0)
		return 0;
	// A plain number for fill_socket: copied out, the verifier no longer types it.
	__u64 file_addr = 0;
	bpf_probe_read_kernel(&file_addr, sizeof(file_addr), &ctx->file);
	struct record r = {};
	struct task_struct *reader = (void *)bpf_get_current_task();
	unsigned int level = BPF_CORE_READ(reader, thread_pid, level);
	r.tid = pid_in_ns(task, level);
	r.tgid = pid_in_ns(BPF_CORE_READ(task, group_leader), level);
	r.fd = ctx->fd;
	r.task_netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	if (fill_socket(&r, file_addr)) {
		r.kind = REC_SOCKET;
		bpf_seq_write(seq, &r, sizeof(r));
		return 0;
	}
	if (!is_ring(file))
		return 0;
	struct io_ring_ctx *ring = BPF_CORE_READ(file, private_data);
	if (!ring)
		return 0;

	const struct cred *sq = BPF_CORE_READ(ring, sq_creds);
	if (sq) {
		r.kind = REC_SQPOLL;
		fill_cred(&r, sq);
		bpf_seq_write(seq, &r, sizeof(r));
	}

	// Personalities: an xarray. One entry at index 0 is the head itself; more hang from a
	// node (an internal entry: pointer | 2) of 64 slots. Ids above 63 need a deeper tree,
	// which is not walked: the ring says so.
	__u32 flags = 0;
	void *head = BPF_CORE_READ(ring, personalities.xa_head);
	// Internal entries below 4096 are markers (XA_ZERO_ENTRY, retry, sibling), not nodes.
	if (head && ((unsigned long)head & 3) == 2 && (unsigned long)head < 4096)
		head = 0;
	if (head && ((unsigned long)head & 3) != 2) {
		r.kind = REC_PERSONALITY;
		r.slot = 0;
		fill_cred(&r, head);
		bpf_seq_write(seq, &r, sizeof(r));
	} else if (head) {
		struct xa_node *node = (void *)((unsigned long)head - 2);
		if (BPF_CORE_READ(node, shift) != 0) {
			flags |= RING_PERSONALITIES_CUT;
		} else {
			struct personality_walk pw = { .seq = seq, .r = &r, .node = node };
			bpf_loop(64, personality, &pw, 0);
		}
	}

	unsigned int nr = BPF_CORE_READ(ring, file_table.data.nr);
	struct io_rsrc_node **nodes = BPF_CORE_READ(ring, file_table.data.nodes);
	if (nr > MAX_FIXED_SLOTS) {
		flags |= RING_FIXED_CUT;
		nr = MAX_FIXED_SLOTS;
	}
	struct record fixed = r;
	struct ring_walk walk = { .seq = seq, .r = &fixed, .nodes = nodes };
	fixed_written = 0;
	if (nodes && nr)
		bpf_loop(nr, fixed_slot, &walk, 0);
	if (fixed_written >= MAX_FIXED_SOCKETS)
		flags |= RING_FIXED_CUT;

	__builtin_memset(&r.flags, 0, sizeof(r) - __builtin_offsetof(struct record, flags));
	r.kind = REC_RING;
	r.slot = nr;
	r.flags = flags;
	r.ino = BPF_CORE_READ(file, f_inode, i_ino);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

// Every task (each thread): a process's cgroup, where cgroup BPF programs (connect4, ...)
// act before netfilter sees anything, and the io_uring rings each thread registered with
// IORING_REGISTER_RING_FDS, which requests reach by index also once the descriptor is
// closed: such a ring may be in no fd table, where held_files never sees it.
SEC("iter/task")
int tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	struct record r = {};
	struct task_struct *reader = (void *)bpf_get_current_task();
	unsigned int level = BPF_CORE_READ(reader, thread_pid, level);
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	r.tid = pid_in_ns(task, level);
	r.tgid = pid_in_ns(leader, level);
	r.task_netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	if (task == leader) {
		r.kind = REC_TASK;
		r.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
		bpf_seq_write(seq, &r, sizeof(r));
		r.kind = 0;
		r.cgroup_id = 0;
	}
	struct io_uring_task *tctx = BPF_CORE_READ(task, io_uring);
	if (!tctx)
		return 0;
	struct registered_walk rw = { .seq = seq, .r = &r, .rings = tctx->registered_rings };
	bpf_loop(16, registered_ring, &rw, 0);
	return 0;
}
