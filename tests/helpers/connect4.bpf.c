// SPDX-License-Identifier: GPL-2.0
// A cgroup connect4 program as an app's platform might attach one (service load
// balancing does this): it rewrites connect() to 169.254.78.99:80 into 169.254.78.2:80
// before netfilter sees the connection. Built and attached by tests/other_ways_out.rs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("cgroup/connect4")
int ml_rewrite(struct bpf_sock_addr *ctx)
{
	if (ctx->user_ip4 == bpf_htonl(0xa9fe4e63))
		ctx->user_ip4 = bpf_htonl(0xa9fe4e02);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
