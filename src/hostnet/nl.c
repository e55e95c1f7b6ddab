/* The rtnetlink plumbing every file of src/hostnet/ shares: a socket per
 * operation (these are control-path calls, and a private socket keeps them
 * thread-safe), errors that keep the kernel's errno and its extended-ack
 * text, and "does this link exist" with a message that names it.
 *
 * libnl turns a kernel error into an NLE_* code that loses the errno
 * (ENODEV and ENOENT both become "object not found") and drops the ack
 * text, so the socket's error callback records both before libnl does. */
#include "hostnet/nl.h"
#include "hostnet/hostnet.h"
#include "common/util.h"
#include <errno.h>
#include <string.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/socket.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* The NLMSG_ERROR payload sits right after its header; with
 * NLM_F_ACK_TLVS the kernel appends attributes, NLMSGERR_ATTR_MSG being a
 * human sentence ("Device does not exist", ...). */
static int error_cb(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg)
{
	struct hnl *nl = arg;
	struct nlmsghdr *h = (struct nlmsghdr *)((char *)e - NLMSG_HDRLEN);

	nl->kernel_errno = e->error < 0 ? -e->error : e->error;
	nl->extack[0] = 0;
	if (h->nlmsg_len >= NLMSG_HDRLEN + sizeof(*e) && (h->nlmsg_flags & NLM_F_ACK_TLVS)) {
		size_t off = NLMSG_HDRLEN + sizeof(*e);
		if (!(h->nlmsg_flags & NLM_F_CAPPED))
			off += NLMSG_ALIGN(e->msg.nlmsg_len >= NLMSG_HDRLEN ? e->msg.nlmsg_len - NLMSG_HDRLEN : 0);
		if (off < h->nlmsg_len) {
			struct nlattr *tb[NLMSGERR_ATTR_MAX + 1];
			if (nla_parse(tb, NLMSGERR_ATTR_MAX, (struct nlattr *)((char *)h + off), (int)(h->nlmsg_len - off),
				      NULL) == 0 &&
			    tb[NLMSGERR_ATTR_MSG])
				nla_strlcpy(nl->extack, tb[NLMSGERR_ATTR_MSG], sizeof(nl->extack));
		}
	}
	return NL_STOP; /* libnl then returns the error as usual */
}

static int nle_to_errno(int nle);

int hnl_open(struct hnl *nl, char *err, size_t errlen)
{
	int one = 1, rc;

	memset(nl, 0, sizeof(*nl));
	nl->sk = nl_socket_alloc();
	if (!nl->sk) {
		errf(err, errlen, "netlink socket: out of memory");
		return -ENOMEM;
	}
	rc = nl_connect(nl->sk, NETLINK_ROUTE);
	if (rc < 0) {
		rc = -nle_to_errno(rc);
		errf(err, errlen, "netlink socket: %s", hostnet_strerror(rc));
		nl_socket_free(nl->sk);
		nl->sk = NULL;
		return rc;
	}
	/* both are hints: an old kernel without them still works, just terser */
	setsockopt(nl_socket_get_fd(nl->sk), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(nl_socket_get_fd(nl->sk), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	nl_socket_modify_err_cb(nl->sk, NL_CB_CUSTOM, error_cb, nl);
	return 0;
}

void hnl_close(struct hnl *nl)
{
	if (nl->sk)
		nl_socket_free(nl->sk);
	nl->sk = NULL;
}

void hnl_reset(struct hnl *nl)
{
	nl->kernel_errno = 0;
	nl->extack[0] = 0;
}

/* NLE_* codes that did not come from the kernel (or came before the
 * callback could see them), as the nearest errno. */
static int nle_to_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case NLE_SUCCESS: return 0;
	case NLE_INTR: return EINTR;
	case NLE_BAD_SOCK: return EBADF;
	case NLE_AGAIN: return EAGAIN;
	case NLE_NOMEM: return ENOMEM;
	case NLE_EXIST: return EEXIST;
	case NLE_INVAL: return EINVAL;
	case NLE_RANGE: return ERANGE;
	case NLE_MSGSIZE: return EMSGSIZE;
	case NLE_OPNOTSUPP: return EOPNOTSUPP;
	case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
	case NLE_OBJ_NOTFOUND: return ENOENT;
	case NLE_NOATTR: return ENOENT;
	case NLE_MISSING_ATTR: return EINVAL;
	case NLE_AF_MISMATCH: return EINVAL;
	case NLE_SEQ_MISMATCH: return EPROTO;
	case NLE_MSG_OVERFLOW: return EOVERFLOW;
	case NLE_MSG_TRUNC: return EMSGSIZE;
	case NLE_NOADDR: return EADDRNOTAVAIL;
	case NLE_SRCRT_NOSUPPORT: return EOPNOTSUPP;
	case NLE_MSG_TOOSHORT: return EPROTO;
	case NLE_MSGTYPE_NOSUPPORT: return EOPNOTSUPP;
	case NLE_OBJ_MISMATCH: return EINVAL;
	case NLE_NOCACHE: return ENOENT;
	case NLE_BUSY: return EBUSY;
	case NLE_PROTO_MISMATCH: return EPROTONOSUPPORT;
	case NLE_NOACCESS: return EACCES;
	case NLE_PERM: return EPERM;
	case NLE_PKTLOC_FILE: return ENOENT;
	case NLE_PARSE_ERR: return EPROTO;
	case NLE_NODEV: return ENODEV;
	case NLE_IMMUTABLE: return EPERM;
	case NLE_DUMP_INTR: return EINTR;
	case NLE_ATTRSIZE: return ERANGE;
	default: return EIO;
	}
}

int hnl_errno(struct hnl *nl, int nlerr)
{
	if (nlerr >= 0)
		return 0;
	if (nl->kernel_errno)
		return -nl->kernel_errno;
	return -nle_to_errno(nlerr);
}

const char *hostnet_strerror(int neg_errno)
{
	switch (-neg_errno) {
	case EPERM:
	case EACCES: return "permission denied (needs CAP_NET_ADMIN)";
	case ENODEV: return "no such device";
	case EEXIST: return "already exists";
	case EOPNOTSUPP: return "not supported by this kernel";
	case ENAMETOOLONG: return "name too long";
	default: return strerror(-neg_errno);
	}
}

const char *hnl_why(struct hnl *nl, int neg_errno, char *buf, size_t len)
{
	if (nl && nl->extack[0])
		snprintf(buf, len, "%s (kernel: %s)", hostnet_strerror(neg_errno), nl->extack);
	else
		snprintf(buf, len, "%s", hostnet_strerror(neg_errno));
	return buf;
}

int hnl_link_get(struct hnl *nl, const char *what, const char *name, struct rtnl_link **link, char *err,
		 size_t errlen)
{
	char why[256];
	int rc;

	*link = NULL;
	rc = hostnet_ifname_check(name, false, err, errlen);
	if (rc)
		return rc;
	hnl_reset(nl);
	rc = hnl_errno(nl, rtnl_link_get_kernel(nl->sk, 0, name, link));
	if (rc == -ENODEV || rc == -ENOENT) {
		errf(err, errlen, "%s %s does not exist", what, name);
		return -ENODEV;
	}
	if (rc) {
		errf(err, errlen, "looking up %s %s: %s", what, name, hnl_why(nl, rc, why, sizeof(why)));
		return rc;
	}
	return 0;
}

int hnl_request(struct hnl *nl, struct nl_msg *msg)
{
	hnl_reset(nl);
	return hnl_errno(nl, nl_send_sync(nl->sk, msg)); /* frees msg */
}

struct getlink_ctx {
	int ifindex;
	int (*parse)(struct nlattr **tb, void *arg);
	void *arg;
	int rc;
	bool seen;
};

static int getlink_valid(struct nl_msg *msg, void *arg)
{
	struct getlink_ctx *c = arg;
	struct nlmsghdr *h = nlmsg_hdr(msg);
	struct nlattr *tb[IFLA_MAX + 1];
	struct ifinfomsg *ifi;

	if (h->nlmsg_type != RTM_NEWLINK || !nlmsg_valid_hdr(h, sizeof(*ifi)))
		return NL_SKIP;
	ifi = nlmsg_data(h);
	if (ifi->ifi_index != c->ifindex)
		return NL_SKIP;
	if (nlmsg_parse(h, sizeof(*ifi), tb, IFLA_MAX, NULL) < 0) {
		c->rc = -EPROTO;
		return NL_SKIP;
	}
	c->seen = true;
	c->rc = c->parse(tb, c->arg);
	return NL_OK;
}

int hnl_send_recv(struct hnl *nl, struct nl_msg *msg, int (*valid)(struct nl_msg *, void *), void *arg)
{
	struct nl_cb *base, *cb;
	int rc;

	hnl_reset(nl);
	rc = nl_send_auto(nl->sk, msg);
	nlmsg_free(msg);
	if (rc < 0)
		return hnl_errno(nl, rc);
	base = nl_socket_get_cb(nl->sk);
	cb = nl_cb_clone(base);
	nl_cb_put(base);
	if (!cb)
		return -ENOMEM;
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, valid, arg);
	rc = nl_recvmsgs(nl->sk, cb);
	nl_cb_put(cb);
	return rc < 0 ? hnl_errno(nl, rc) : 0;
}

int hnl_getlink_raw(struct hnl *nl, int ifindex, int (*parse)(struct nlattr **tb, void *arg), void *arg)
{
	struct getlink_ctx c = { .ifindex = ifindex, .parse = parse, .arg = arg };
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	struct nl_msg *msg;
	int rc;

	msg = nlmsg_alloc_simple(RTM_GETLINK, NLM_F_REQUEST);
	if (!msg)
		return -ENOMEM;
	if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	rc = hnl_send_recv(nl, msg, getlink_valid, &c);
	if (rc)
		return rc;
	rc = hnl_errno(nl, nl_wait_for_ack(nl->sk)); /* the auto-ack after the reply */
	if (rc)
		return rc;
	if (!c.seen)
		return c.rc ? c.rc : -ENODEV;
	return c.rc;
}
