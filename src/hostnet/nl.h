/* Internal to src/hostnet/: one rtnetlink socket per operation, with the
 * kernel's own errno and extended-ack text kept for the error message
 * (libnl-3.7 folds errnos into its NLE_* codes and drops the text). */
#ifndef GLIDE_HOSTNET_NL_H
#define GLIDE_HOSTNET_NL_H
#include <stddef.h>
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/route/link.h>

struct hnl {
	struct nl_sock *sk;
	int kernel_errno;  /* from the last NLMSG_ERROR, positive; 0 for none */
	char extack[160];  /* NLMSGERR_ATTR_MSG of that error, "" for none */
};

/* Connects a NETLINK_ROUTE socket with extended acks on. 0 or -errno (err set). */
int hnl_open(struct hnl *nl, char *err, size_t errlen);
void hnl_close(struct hnl *nl);
/* Forgets the last kernel error (before each request). */
void hnl_reset(struct hnl *nl);
/* The -errno for a libnl return value: the kernel's errno when one came back. */
int hnl_errno(struct hnl *nl, int nlerr);
/* Why, for a message: "permission denied (needs CAP_NET_ADMIN)", strerror,
 * and the kernel's extended-ack text when it gave one. */
const char *hnl_why(struct hnl *nl, int neg_errno, char *buf, size_t len);
/* strerror-like, with the hint a reader needs for EPERM/EOPNOTSUPP. */
const char *hostnet_strerror(int neg_errno);

/* The link called name: 0, -ENODEV (err: "WHAT NAME does not exist"), or
 * another -errno. what is "bridge", "tap", "link", ... */
int hnl_link_get(struct hnl *nl, const char *what, const char *name, struct rtnl_link **link, char *err,
		 size_t errlen);
/* Sends msg (freed), waits for the kernel's ack: 0 or -errno. */
int hnl_request(struct hnl *nl, struct nl_msg *msg);
/* Sends msg (freed) and hands each reply message to valid(msg, arg)
 * until the kernel's answer ends (a dump's DONE, or the single reply).
 * 0 or -errno. */
int hnl_send_recv(struct hnl *nl, struct nl_msg *msg, int (*valid)(struct nl_msg *, void *), void *arg);
/* RTM_GETLINK for one ifindex; calls parse with the reply's attributes
 * (tb[IFLA_MAX + 1]). 0 or -errno. */
int hnl_getlink_raw(struct hnl *nl, int ifindex, int (*parse)(struct nlattr **tb, void *arg), void *arg);
#endif
